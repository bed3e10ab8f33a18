/* The edgemix channel strip in plain C, as a speed peer for benchmarks/bench_console.py.
 *
 * Same chain and the same arithmetic as edgemix/dsp/strip.py with static parameters:
 * per-sample smoothed input gain, two high-pass and four EQ biquads (TDF-II, double),
 * the Giannoulis et al. (2012) compressor with a log-domain smooth branching detector
 * (log10 only above the knee, pow only while reducing gain), peak and RMS meters, then a
 * per-sample smoothed fader/pan and two sends accumulated into the buses.
 * Built with plain `cc -O3` (no -ffast-math, no -march) by the benchmark.
 */
#include <math.h>
#include <string.h>

#include <stdint.h>

/* dB conversions with the same inline log2/exp2 as edgemix/dsp/dynamics.py (no libm call
 * in the sample loop, so no spills of the strip's state around it) */
#define LOG2_10_OVER_20 0.16609640474436813
#define DB10_PER_LOG2 3.010299956639812

static inline double fast_log2(double x) {
    uint64_t bits; memcpy(&bits, &x, 8);
    int64_t e = (int64_t)(bits >> 52) - 1023;
    uint64_t mb = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double m; memcpy(&m, &mb, 8);
    if (m > 1.4142135623730951) { m *= 0.5; e += 1; }
    double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double s = t * (1.0 + t2 * (1.0/3 + t2 * (1.0/5 + t2 * (1.0/7 + t2 * (1.0/9 + t2 * (1.0/11))))));
    return (double)e + s * 2.8853900817779268;
}

static inline double fast_exp2(double y) {
    if (y < -1000.0) return 0.0;
    /* round to nearest without a libm call (plain -O3 targets baseline x86-64, where
     * floor() is a call): the 1.5 * 2^52 trick, valid for |y| < 2^51 */
    double n = (y + 6755399441055744.0) - 6755399441055744.0, z = (y - n) * 0.6931471805599453;
    double p = 1.0 + z * (1.0 + z * (0.5 + z * (1.0/6 + z * (1.0/24 + z * (1.0/120 + z * (1.0/720 + z * (1.0/5040 + z * (1.0/40320))))))));
    uint64_t b = (uint64_t)((int64_t)n + 1023) << 52; double s; memcpy(&s, &b, 8);
    return p * s;
}

typedef struct {
    double coef[6][5];   /* b0 b1 b2 a1 a2 per section */
    double z[6][2];
    double g_in, t_in, a_g;
    double thr, ratio, knee, knee_lo_sq, a_att, a_rel, makeup_lin;
    double yl, pk, mms, pk_fall, a_mms;
    double gl, gr, tl, tr, gs[2], ts[2];
} strip_t;

static inline double biquad(double x, const double *c, double *z) {
    double y = c[0] * x + z[0];
    z[0] = c[1] * x - c[3] * y + z[1];
    z[1] = c[2] * x - c[4] * y;
    return y;
}

static inline double gain_computer(double x_db, double thr, double ratio, double knee) {
    double over = x_db - thr;
    if (2.0 * over < -knee) return 0.0;
    if (2.0 * fabs(over) <= knee) {
        double t = over + 0.5 * knee;
        return (1.0 / ratio - 1.0) * t * t / (2.0 * knee);
    }
    return (1.0 / ratio - 1.0) * over;
}

void strips_process(strip_t *s, int n_ch, const float *x, float *work, int frames,
                    float *bus, float *aux) {
    /* x, work: (n_ch, frames); bus: (2, frames); aux: (2, frames); zeroed by the caller.
     * State is copied into locals around each loop, as a careful C programmer would (the
     * compiler cannot keep struct fields in registers across stores through float*). */
    for (int c = 0; c < n_ch; c++) {
        strip_t *st = &s[c];
        const float *xi = x + (size_t)c * frames;
        float *w = work + (size_t)c * frames;
        double cf[6][5], z[6][2];
        memcpy(cf, st->coef, sizeof cf);
        memcpy(z, st->z, sizeof z);
        double g_in = st->g_in, t_in = st->t_in, a_g = st->a_g;
        double thr = st->thr, ratio = st->ratio, knee = st->knee, klo = st->knee_lo_sq;
        double a_att = st->a_att, a_rel = st->a_rel, mk = st->makeup_lin;
        double yl = st->yl, pk = st->pk, mms = st->mms, fall = st->pk_fall, a_m = st->a_mms;
        for (int n = 0; n < frames; n++) {
            g_in += a_g * (t_in - g_in);
            double v = xi[n] * g_in;
            for (int k = 0; k < 6; k++) v = biquad(v, cf[k], z[k]);
            double l2 = v * v, xl = 0.0;
            if (l2 > klo) xl = -gain_computer(DB10_PER_LOG2 * fast_log2(l2), thr, ratio, knee);
            if (xl > yl) yl = a_att * yl + (1.0 - a_att) * xl;
            else yl = a_rel * yl + (1.0 - a_rel) * xl;
            if (yl < 1e-7) yl = 0.0;
            double g = yl == 0.0 ? mk : mk * fast_exp2(-yl * LOG2_10_OVER_20);
            v *= g;
            double a = fabs(v);
            pk = a > pk * fall ? a : pk * fall;
            mms += a_m * (v * v - mms);
            w[n] = (float)v;
        }
        memcpy(st->z, z, sizeof z);
        st->g_in = g_in; st->yl = yl; st->pk = pk; st->mms = mms;
        double gl = st->gl, gr = st->gr, tl = st->tl, tr = st->tr;
        for (int n = 0; n < frames; n++) {
            gl += a_g * (tl - gl);
            gr += a_g * (tr - gr);
            bus[n] += (float)(gl * w[n]);
            bus[frames + n] += (float)(gr * w[n]);
        }
        st->gl = gl; st->gr = gr;
        for (int k = 0; k < 2; k++) {
            double gs = st->gs[k], ts = st->ts[k];
            for (int n = 0; n < frames; n++) {
                gs += a_g * (ts - gs);
                aux[k * frames + n] += (float)(gs * w[n]);
            }
            st->gs[k] = gs;
        }
    }
}

int strip_size(void) { return (int)sizeof(strip_t); }
