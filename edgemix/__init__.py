"""edgemix: real-time automatic mixing for low-power boards."""
__version__ = "0.1.0"
