# Job runners used by the stages (source it). Local parallel jobs by default; to submit every job through
# Slurm's srun instead, `export ESGD_QUEUE=slurm` (extra srun options go in ESGD_SRUN_OPTS, e.g. "-p cpu").
export train_cmd="esgd-queue --backend ${ESGD_QUEUE:-local}"
export decode_cmd="$train_cmd"
