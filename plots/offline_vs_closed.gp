# offline_vs_closed.gp — does the offline metric predict the real damage?
# x: retained mass from replaying the full-cache trace; y: the closed-loop
# next-token NLL increase of the same policy and budget.
# Data: a block per policy, columns: offline_mass  delta_nll  budget
# Variables: data, out, title, series, families.
load "scripts/common.gp"
set title title noenhanced
set xlabel "offline retained attention mass (replay of the full-cache trace)"
set ylabel "closed-loop NLL increase (nats per token)"
set logscale y
set format y "%g"
set key title "policy"
plot for [i=1:words(series)] data index (i-1) using 1:($2 > 0 ? $2 : 1e-4) with linespoints lw 1.5 pt 7 ps 1.2 \
     lc rgb colour(word(families,i)) title word(series,i), \
     for [i=1:words(series)] data index (i-1) using 1:($2 > 0 ? $2 : 1e-4):3 with labels offset 1.2,0.6 \
     font ",8" tc rgb colour(word(families,i)) notitle
