"""MAE's linear probe (He et al. 2021, arXiv:2111.06377, Table 10): the encoder frozen, a BatchNorm + Linear
head trained; no Mixup/CutMix, smoothing, erasing, RandAugment or drop
path; no weight decay; 90 epochs with 10 warm-up epochs.

    python scripts/finetune.py --recipe linear_probe --model out/mae --dataset <imagenet> --learning_rate <lr>

The paper's optimizer is LARS (base lr 0.1, batch 16384); this script trains with AdamW, for which no probe
learning rate was measured here, so the CLI's default (2e-3) stands until you set --learning_rate.
Result: not yet measured here (the paper reports 68.0% top-1 on ImageNet-1k for ViT-B/16).
"""
MODEL = None  # --model: the MAE pre-training output
SETTINGS = dict(linear_probe=True, layer_decay=1.0, drop_path_rate=0.0, randaugment=None, random_erasing=0.0,
                mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0, hflip=0.5, crop_scale_min=0.08)
ARGS = dict(weight_decay=0.0, num_train_epochs=90, warmup_steps=10 / 90, lr_scheduler_type="cosine")
