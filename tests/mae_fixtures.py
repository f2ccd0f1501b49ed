"""The tiny VideoMAE model settings the MAE tests share."""

TINY_MAE = {
    "objective": "videomae",
    "encoder": "tiny",
    "mask_ratio": 0.85,
    "mask_type": "tube",
    "decoder_dim": 32,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "norm_pix": True,
}
