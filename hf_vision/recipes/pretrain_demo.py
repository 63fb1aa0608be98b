"""The default of scripts/pretrain_mae.py: a small MAE on the embedded 32x32 digits, on a laptop CPU.

    python scripts/pretrain_mae.py                     # = --recipe demo

Result (README, this project's 2-core CPU): loss 2.41 -> 0.65 in 338 steps (30 epochs of 1,438 digits), about
3 minutes wall when the machine is quiet.
"""
# 8x8 grid of 4-px patches, 4 encoder blocks of width 128, a 2-block decoder of width 96.
MODEL = dict(preset="mae-vit-base-patch16", image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=4,
             num_attention_heads=4, intermediate_size=512, decoder_hidden_size=96, decoder_num_hidden_layers=2,
             decoder_num_attention_heads=4, decoder_intermediate_size=384)
ARGS = dict(num_train_epochs=30.0, per_device_batch_size=128, base_learning_rate=1.5e-4, weight_decay=0.05,
            warmup_steps=0.05)
