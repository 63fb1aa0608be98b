"""The default of scripts/finetune.py on the embedded digits: a small ViT from scratch (or `--model` of yours),
light augmentation and no flips (digits are not mirror-symmetric), for 1,438 training digits and a few CPU minutes.

    python scripts/finetune.py                          # = --recipe auto, which is demo on the digits
    python scripts/finetune.py --model outputs/pretrain_mae --output_dir outputs/finetune_mae

Result (README, this project's 2-core CPU, seeded, fused AdamW): 92.8% top-1 on the 359 held-out digits from
scratch (1.4 CPU-minutes); 98.6% from the encoder of `python scripts/pretrain_mae.py`.
"""
# 8x8 patches of 4 px, 4 blocks of width 128 (~0.55M parameters), global average pooling.
MODEL = dict(preset="vit-base-patch16-224", image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=4,
             num_attention_heads=4, intermediate_size=256, pooling="gap")
SETTINGS = dict(layer_decay=1.0, drop_path_rate=0.0, randaugment=None, random_erasing=0.0, mixup_alpha=0.0,
                cutmix_alpha=0.0, label_smoothing=0.1, hflip=0.0, crop_scale_min=0.7)
# TrainingArguments defaults of the CLI (every other recipe starts from these): warm-up + cosine, MAE's decay.
ARGS = dict(per_device_train_batch_size=64, per_device_eval_batch_size=128, learning_rate=2e-3, weight_decay=0.05,
            lr_scheduler_type="cosine", warmup_steps=0.1, num_train_epochs=15, logging_steps=20, adam_beta2=0.999)
