"""ViT-B/16 trained from scratch on ImageNet-1k (Dosovitskiy et al. 2020, arXiv:2010.11929, Table 3, ImageNet
row, as read there): 300 epochs, lr 3e-3 at batch 4096 (512 per device x 8), cosine decay after 10k linear
warm-up steps, weight decay 0.3, gradient clipping at norm 1, Inception crops and flips, no Mixup/CutMix.
The paper's dropout 0.1 is not part of this recipe (our ViT config has no dropout field set here).

    torchrun --nproc_per_node 8 scripts/finetune.py --recipe vit_scratch --dataset <imagenet> --bf16 \
        --output_dir out/vit_b16

Result: not yet measured here.
"""
MODEL = dict(preset="vit-base-patch16-224")
SETTINGS = dict(layer_decay=1.0, drop_path_rate=0.0, randaugment=None, random_erasing=0.0, mixup_alpha=0.0,
                cutmix_alpha=0.0, label_smoothing=0.0, hflip=0.5, crop_scale_min=0.08)
ARGS = dict(per_device_train_batch_size=512, learning_rate=3e-3, weight_decay=0.3, lr_scheduler_type="cosine",
            warmup_steps=10_000, num_train_epochs=300, max_grad_norm=1.0, adam_beta2=0.999)
