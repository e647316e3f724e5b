"""Metrics of the DATE paper's Table 1 (zero-shot FID, CLIP score, ImageReward) and the report that tabulates them."""
