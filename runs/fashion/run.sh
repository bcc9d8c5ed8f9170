#!/bin/bash
# Start or resume (same command) the Fashion-MNIST UNet flow training in the background.
cd /work/runs/fashion
OMP_NUM_THREADS=1 PYTHONPATH=${MMMI_SRC:-/work/main} setsid nohup nice -n 10 /work/main/.venv/bin/python -m mmmi_dsl.train \
  --data fashion-mnist --arch unet --channels 32 --mults 1,2,2 --res-blocks 1 --attention 1 --heads 4 --groups 8 \
  --t-dim 128 --steps 250000 --batch-size 24 --lr 5e-4 --grad-clip 1 --ema 0.9995 --seed 0 --threads 1 \
  --checkpoint-dir /work/runs/fashion --checkpoint-every 500 --sample-every 1000 --resume \
  --out /work/runs/fashion/fashion >> /work/runs/fashion/train.log 2>&1 < /dev/null &
echo $! > /work/runs/fashion/train.pid
