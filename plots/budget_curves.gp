# budget_curves.gp — one metric against the cache budget, one line per
# configuration (mean over sequences, error bars one standard deviation).
# Data: a block per series (separated by two blank lines), columns:
#   budget  mean  std
# Variables: data, out, title ("|" between lines), xlabel, ylabel, symlog (1: symmetric log y
# axis, for ΔNLL, which can be negative) with ymin, ymax, and common.gp's series styles.
load "scripts/common.gp"
set offsets graph 0.03, graph 0.03, 0, 0
set title lines(title) noenhanced
set xlabel xlabel noenhanced
set ylabel ylabel noenhanced
if (exists("symlog") && symlog) {
    set nonlinear y via symlog(y) inverse symlog_inverse(y)
    set yrange [ymin:ymax]
    set ytics ("-0.1" -0.1, "-0.01" -0.01, "0" 0, "0.01" 0.01, "0.03" 0.03, "0.1" 0.1, "0.3" 0.3, "1" 1, "3" 3, "10" 10)
}
plot for [i=1:words(series)] data index (i-1) using 1:2:3 with yerrorlines lw 1.5 ps 0.7 \
     lc rgb colour(i) dt dash(i) pt point(i) title label(i)
