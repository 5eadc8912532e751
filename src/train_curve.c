/* train_curve.c: the loss curve of a run as an SVG image. */
#include "train_run.h"
#include "npy.h"

#include <math.h>

void train_write_curve(const run *r) {
    long n = step_count(&r->s);
    if (n <= 0 || !r->loss_hist) return;
    const int W = 800, Hh = 360, L = 60, R = 70, T = 30, B = 40;
    int np = n < 1000 ? (int)n : 1000;
    double lmin = INFINITY, lmax = -INFINITY, rmax = 0;
    double *lx = cb_xmalloc((size_t)np * sizeof(double)), *la = cb_xmalloc((size_t)np * sizeof(double));
    double *lr = cb_xmalloc((size_t)np * sizeof(double));
    for (int p = 0; p < np; p++) {
        long a = (long)((double)p * n / np), b = (long)((double)(p + 1) * n / np);
        if (b <= a) b = a + 1;
        double sl = 0, sr = 0;
        for (long i = a; i < b; i++) { sl += r->loss_hist[i]; sr += r->lr_hist[i]; }
        lx[p] = (double)(a + b) / 2.0 + 0.5;
        la[p] = sl / (double)(b - a);
        lr[p] = sr / (double)(b - a);
    }
    /* moving average over ~5% of the points */
    int win = np / 20 > 1 ? np / 20 : 1;
    double *ma = cb_xmalloc((size_t)np * sizeof(double));
    for (int p = 0; p < np; p++) {
        int a = p - win + 1 < 0 ? 0 : p - win + 1;
        double sum = 0;
        for (int i = a; i <= p; i++) sum += la[i];
        ma[p] = sum / (p - a + 1);
        if (la[p] < lmin) lmin = la[p];
        if (la[p] > lmax) lmax = la[p];
        if (lr[p] > rmax) rmax = lr[p];
    }
    if (!(lmax > lmin)) { lmax = lmin + 1; }
    if (rmax <= 0) rmax = 1;
    char *path = cb_path_join(r->run_dir, "curve.svg");
    char *tmp;
    FILE *f = cb_out_open(path, &tmp, NULL);
    if (f) {
        double pw = W - L - R, ph = Hh - T - B;
        fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
                "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, Hh);
        fprintf(f, "<text x=\"%d\" y=\"18\">%s: training loss and learning rate, %ld steps</text>\n", L,
                r->tr->model_name, n);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#888\"/>\n", L, T, pw, ph);
        for (int k = 0; k <= 4; k++) {
            double y = T + ph * k / 4.0;
            fprintf(f, "<text x=\"%d\" y=\"%g\" text-anchor=\"end\" fill=\"#1f77b4\">%.3g</text>\n", L - 4, y + 4,
                    lmax - (lmax - lmin) * k / 4.0);
            fprintf(f, "<text x=\"%g\" y=\"%g\" fill=\"#d62728\">%.2g</text>\n", L + pw + 4, y + 4, rmax * (4 - k) / 4.0);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\">0</text><text x=\"%g\" y=\"%d\" text-anchor=\"end\">step %ld</text>\n",
                L, Hh - B + 16, L + pw, Hh - B + 16, n);
        const double *ys[3] = {la, ma, lr};
        const char *style[3] = {"stroke=\"#aec7e8\" stroke-width=\"1\"", "stroke=\"#1f77b4\" stroke-width=\"2\"",
                                "stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\""};
        for (int c = 0; c < 3; c++) {
            fprintf(f, "<polyline fill=\"none\" %s points=\"", style[c]);
            for (int p = 0; p < np; p++) {
                double x = L + pw * lx[p] / (double)n;
                double y = c < 2 ? T + ph * (lmax - ys[c][p]) / (lmax - lmin) : T + ph * (1 - ys[c][p] / rmax);
                fprintf(f, "%.1f,%.1f ", x, y);
            }
            fprintf(f, "\"/>\n");
        }
        fprintf(f, "<text x=\"%g\" y=\"%d\" fill=\"#1f77b4\">loss (moving average)</text>"
                "<text x=\"%g\" y=\"%d\" fill=\"#d62728\" text-anchor=\"end\">learning rate</text>\n</svg>\n",
                L + 4.0, T + 14, L + pw - 4, T + 14);
        cb_out_commit(f, tmp, path, NULL);
    }
    free(path); free(lx); free(la); free(lr); free(ma);
}

