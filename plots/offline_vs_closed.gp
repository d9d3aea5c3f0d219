# offline_vs_closed.gp — does the offline metric predict the real damage?
# x: retained mass from replaying the full-cache trace; y: the closed-loop
# next-token NLL increase of the same policy and budget, on a symmetric log
# axis (linear within ±0.01 nats): a negative ΔNLL is drawn at its value.
# Data: a block per series, columns: offline_mass  delta_nll  budget
# Variables: data, out, title, subtitle (the rank correlations, "|" between lines), ymin, ymax, and common.gp's series styles.
load "scripts/common.gp"
set title sprintf("%s\n%s", title, lines(subtitle)) noenhanced font smallfont
set xlabel "offline retained attention mass (replay of the full-cache trace)"
set ylabel "closed-loop NLL increase (nats per token)"
set nonlinear y via symlog(y) inverse symlog_inverse(y)
set yrange [ymin:ymax]
set ytics ("-0.1" -0.1, "-0.01" -0.01, "0" 0, "0.01" 0.01, "0.03" 0.03, "0.1" 0.1, "0.3" 0.3, "1" 1, "3" 3, "10" 10)
set arrow from graph 0, first 0 to graph 1, first 0 nohead lw 0.8 lc rgb "#888888" dt 2
plot for [i=1:words(series)] data index (i-1) using 1:2 with linespoints lw 1.2 ps 0.8 \
     lc rgb colour(i) dt dash(i) pt point(i) title label(i), \
     for [i=1:words(series)] data index (i-1) using 1:2:3 with labels offset 1.4,0.5 \
     font tinyfont tc rgb colour(i) notitle
