python -m torch.distributed.launch --nproc_per_node=4 main.py /media/ssd0/ilsvrc12/ --fp16 --b 64 --static-loss-scale 128.0 --workers 2  2>&1 | tee log.txt
