"""Measure a trained model's normalization layers on its own data (mmbcn.commands.analyze).

    python tools/analyze_norm.py CONFIG CHECKPOINT [--num-batches N] [--split train|val] [--out DIR]

Prints a per-layer table (eliminated and constant channels, margin percentiles) and the sample
similarity per stage, and writes DIR/norm_statistics.json and DIR/norm_statistics.png.
"""

from mmbcn.commands.analyze import analyze

if __name__ == '__main__':
    analyze()
