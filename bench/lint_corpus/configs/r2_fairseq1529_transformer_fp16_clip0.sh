export CUDA_VISIBLE_DEVICES=4,5,6,7
python train.py $data_bin \
      -s zh -t en \
      --lr 0.0005 --min-lr 1e-09 \
      --weight-decay 0 --clip-norm 0.0 \
      --dropout 0.3 \
      --max-tokens 30000 \
      --arch transformer \
      --optimizer adam --adam-betas '(0.9, 0.98)' \
      --lr-scheduler inverse_sqrt --warmup-init-lr 1e-07 \
      --warmup-updates 4000 \
      --ddp-backend=no_c10d \
      --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
      --save-dir $checkpoints \
      --fp16
