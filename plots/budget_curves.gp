# budget_curves.gp — one metric against the cache budget, one line per policy
# (mean over sequences, error bars one standard deviation over sequences).
# Data: a block per policy (separated by two blank lines), columns:
#   budget  mean  std
# Variables: data, out, title, xlabel, ylabel, series (policy labels,
# space-separated, in block order), families (policy names, for colours).
load "scripts/common.gp"
set title title noenhanced
set xlabel xlabel
set ylabel ylabel
set key title "policy"
plot for [i=1:words(series)] data index (i-1) using 1:2:3 with yerrorlines lw 2 pt 7 ps 0.8 \
     lc rgb colour(word(families,i)) dt dash(word(families,i)) title word(series,i)
