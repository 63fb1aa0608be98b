"""MAE's end-to-end fine-tuning of a pre-trained ViT-B/16 encoder (He et al. 2021, arXiv:2111.06377, Table 9):
layer-wise lr decay 0.75, drop path 0.1, RandAugment(2, 9), RandomErasing 0.25, Mixup 0.8 / CutMix 1.0, label
smoothing 0.1, flips, crops of scale (0.08, 1); AdamW, weight decay 0.05, cosine with 5 warm-up epochs, 100 epochs
at effective batch 1024 (128 per device x 8), lr 2e-3 (base 5e-4 x 1024 / 256; with another batch pass
--base_learning_rate 5e-4).

    torchrun --nproc_per_node 8 scripts/finetune.py --recipe mae --model out/mae --dataset <imagenet> --bf16 \
        --output_dir out/ft

Also what `--recipe auto` takes for its augmentation on any dataset other than the embedded digits.
Result: not yet measured here (the paper reports 83.6% top-1 on ImageNet-1k for ViT-B/16).
"""
MODEL = None  # --model: the MAE pre-training output; without it, the demo's small ViT
SETTINGS = dict(layer_decay=0.75, drop_path_rate=0.1, randaugment=(2, 9), random_erasing=0.25, mixup_alpha=0.8,
                cutmix_alpha=1.0, label_smoothing=0.1, hflip=0.5, crop_scale_min=0.08)
ARGS = dict(per_device_train_batch_size=128, learning_rate=2e-3, weight_decay=0.05, lr_scheduler_type="cosine",
            warmup_steps=5 / 100, num_train_epochs=100)
