#!/usr/bin/env bash
# Fixed runs for a refactor's "no number moves" check (every solver and adapter family on every problem, a few
# samples each, the sweep and tune paths): OUT=DIR [BENCH="bench"] [ONLY="name ..."] bash runs.sh, once before and once
# after the change, then python compare.py BEFORE AFTER.
set -u
BENCH=${BENCH:-bench}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
O=${OUT:?}; mkdir -p $O
ONLY=${ONLY:-}
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
r() { [ -n "$ONLY" ] && ! [[ " $ONLY " == *" $1 "* ]] && return 0; name=$1; shift; $BENCH run "$@" --out $O/$name --quiet > $O/$name.log 2>&1 || echo "FAILED $name" >> $O/failures; }
r zf    --problem cs_mri --algo zero-filled --n 2
r cg    --problem cs_mri --algo cg-sense --n 2
r l1    --problem cs_mri --algo l1-wavelet --n 2
r tv    --problem cs_mri --algo tv --n 2 problem.coils=1
r dps   --problem cs_mri --algo dps --n 2 problem.coils=1 algorithm.n_steps=20
r ddrm  --problem cs_mri --algo ddrm --n 2 problem.coils=1
r daps-tda --problem cs_mri --algo daps+tda --n 2 algorithm.budget=0.1k
r diffpir-tda --problem cs_mri --algo diffpir+tda --n 2 algorithm.n_steps=10
r diffpir-air --problem cs_mri --algo diffpir+air --n 2 algorithm.n_steps=10
r diffpir-pa --problem cs_mri --algo diffpir+prior-affine --n 2 algorithm.n_steps=10
r dps-tda-nw --problem cs_mri --algo dps+tda --n 2 problem.coils=1 algorithm.n_steps=10 adapters.tda.kind=network
r lowfield-diffdeur --problem lowfield --algo diffdeur --n 1 algorithm.n_steps=3 algorithm.inr_iters=20
r lowfield-daps-tda --problem lowfield --algo daps+tda --n 2 algorithm.budget=0.1k
r inp-dps-gauss --problem inpainting --algo dps --n 2 --prior gaussian algorithm.n_steps=20
r inp-daps-gauss --problem inpainting --algo daps --n 2 --prior gaussian algorithm.budget=0.1k
r unet-fine --problem cs_mri --algo unet+fine --n 2 adapters.fine.epochs=2
r varnet-ssdu --problem cs_mri --algo varnet+ssdu --n 2 adapters.ssdu.epochs=2
r unet-nr2n --problem cs_mri --algo unet+nr2n --n 2 adapters.nr2n.epochs=2
r unet-dip --problem cs_mri --algo unet+dip-ttt --n 1
r unet-mrinr-sst --problem cs_mri --algo unet+mr-inr+sst --n 2 adapters.mr-inr.epochs=2
r unet-online --problem cs_mri --algo unet+fine --n 2 --scheme online adapters.fine.epochs=1
r mrsi-csi --problem mrsi --algo csi-fit --n 1
r mrsi-lowrank --problem mrsi --algo mrsi-lowrank --n 1
r mrsi-tv --problem mrsi --algo mrsi-tv --n 1
r mrsi-daps-tda --problem mrsi --algo daps+tda --n 1 algorithm.budget=0.1k
if want sweep; then $BENCH run -m --problem inpainting --algo zero-filled,cg-sense --n 2 --out $O/sweep --quiet > $O/sweep.log 2>&1 || echo "FAILED sweep" >> $O/failures; fi
if want tune; then $BENCH tune --problem inpainting --algo diffpir --prior gaussian --trials 2 --n-val 2 --out $O/tune algorithm.n_steps=5 > $O/tune.log 2>&1 || echo "FAILED tune" >> $O/failures; fi
echo done > $O/DONE
