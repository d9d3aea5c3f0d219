# eviction_age.gp — how old tokens are when each policy evicts them.
# Data: a block per policy, columns: age_bin_start  share_of_evictions
# Variables: data, out, title, series, families, binwidth.
load "scripts/common.gp"
set title title noenhanced
set xlabel sprintf("age at eviction, t - i (tokens; bins of %d)", binwidth)
set ylabel "share of the policy's evictions"
set logscale y
set key title "policy"
plot for [i=1:words(series)] data index (i-1) using 1:2 with steps lw 2 \
     lc rgb colour(word(families,i)) dt dash(word(families,i)) title word(series,i)
