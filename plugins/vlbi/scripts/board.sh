#!/usr/bin/env bash
# The VLBI plugin's board: DPS and DAPS, closure-only and with the amplitude term, with and without TDA, on 16 test
# sources of the training family and 16 of the doubles shift; small step counts for a CPU (docs/vlbi.md).
# Usage: bash plugins/vlbi/scripts/board.sh OUT_DIR   (needs the plugin installed: pip install -e plugins/vlbi)
set -euo pipefail
out=${1:?usage: board.sh OUT_DIR}
bench=${BENCH:-bench}
common=(--problem blackhole --dataset synthetic-eht --prior eht-rings-64 --n 16 --batch-size 16 --seed 0)
dps=(algorithm.n_steps=${DPS_STEPS:-50} algorithm.zeta=${DPS_ZETA:-1.0})
daps=(algorithm.budget=null algorithm.n_steps=25 algorithm.ode_steps=2 algorithm.langevin_steps=20
      algorithm.lr=${DAPS_LR:-1e-4} algorithm.tau_mode=noise)
tda=(adapters.tda.sigma_max=100 adapters.tda.lr=0.05)
# the amplitude term at weight 0.01 (at 1 DAPS diverges at these Langevin steps); TDA adapts below sigma = 1
amp=(problem.amp_weight=0.01)
tda_amp=(adapters.tda.lr=0.05 adapters.tda.iters=5)
$bench run "${common[@]}" --algo daps --out "$out/daps" "${daps[@]}"
$bench run "${common[@]}" --algo daps+tda --out "$out/daps+tda" "${daps[@]}" "${tda[@]}"
$bench run "${common[@]}" --algo daps --out "$out/daps-amp" "${daps[@]}" "${amp[@]}"
$bench run "${common[@]}" --algo daps+tda --out "$out/daps+tda-amp" "${daps[@]}" "${amp[@]}" "${tda_amp[@]}"
$bench run "${common[@]}" --algo daps --out "$out/daps-doubles" "${daps[@]}" dataset.morphology=doubles
$bench run "${common[@]}" --algo dps --out "$out/dps" "${dps[@]}"
$bench run "${common[@]}" --algo dps+tda --out "$out/dps+tda" "${dps[@]}" "${tda[@]}"
python "$(dirname "$0")/board_table.py" "$out"/*/ > "$out/board.md"
python "$(dirname "$0")/gain_error.py" "$out/daps+tda-amp" >> "$out/board.md"
cat "$out/board.md"
