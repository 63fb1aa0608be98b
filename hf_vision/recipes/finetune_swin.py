"""Swin-T trained on ImageNet-1k (Liu et al. 2021, arXiv:2103.14030, Section 4.1): AdamW, 300 epochs, cosine with
20 linear warm-up epochs, lr 1e-3 at batch 1024 (128 per device x 8), weight decay 0.05, DeiT's augmentation and
regularisation (RandAugment(2, 9), Mixup 0.8, CutMix 1.0, RandomErasing 0.25, label smoothing 0.1), stochastic
depth from the preset (0.2 for Swin-T), gradient clipping at norm 5 (the authors' code).

    torchrun --nproc_per_node 8 scripts/finetune.py --recipe swin --dataset <imagenet> --bf16 --output_dir out/swin_t

Other sizes: --model swin-small-patch4-window7-224 (their drop path comes with the preset).
Result: not yet measured here (the paper reports 81.3% top-1 for Swin-T).
"""
MODEL = dict(preset="swin-tiny-patch4-window7-224")
SETTINGS = dict(layer_decay=1.0, drop_path_rate=None, randaugment=(2, 9), random_erasing=0.25, mixup_alpha=0.8,
                cutmix_alpha=1.0, label_smoothing=0.1, hflip=0.5, crop_scale_min=0.08)
ARGS = dict(per_device_train_batch_size=128, learning_rate=1e-3, weight_decay=0.05, lr_scheduler_type="cosine",
            warmup_steps=20 / 300, num_train_epochs=300, max_grad_norm=5.0)
