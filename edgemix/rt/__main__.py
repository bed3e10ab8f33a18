"""``python -m edgemix.rt devices|run ...``: the live commands without the full CLI."""
from edgemix.rt.commands import rt_group

if __name__ == "__main__":
    rt_group(prog_name="edgemix")
