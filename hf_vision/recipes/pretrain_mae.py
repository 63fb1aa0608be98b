"""MAE pre-training of ViT-B/16 (He et al. 2021, arXiv:2111.06377, Table 8): 75% masking, normalised-pixel loss,
AdamW (0.9, 0.95), base lr 1.5e-4 scaled by effective batch / 256, weight decay 0.05, cosine with 40 warm-up
epochs, 800 epochs at effective batch 4096 (here 128 per device: 32 processes, or gradient accumulation).

    accelerate launch --mixed_precision bf16 scripts/pretrain_mae.py --recipe mae --dataset <imagenet> \
        --gradient_accumulation_steps <n> --checkpointing_steps 1000 --output_dir out/mae

Result: not yet measured here (the paper's ViT-B/16 fine-tunes to 83.6% top-1 on ImageNet-1k after 1600 epochs).
"""
MODEL = dict(preset="mae-vit-base-patch16")  # mask_ratio 0.75 and norm_pix_loss come with the preset
ARGS = dict(num_train_epochs=800.0, per_device_batch_size=128, base_learning_rate=1.5e-4, weight_decay=0.05,
            warmup_steps=40 / 800)
