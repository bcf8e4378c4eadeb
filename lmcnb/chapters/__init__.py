"""The chapters' own library: one module per chapter (cnn, gpt, ptb, vit) with the same small
protocol, and what several chapters share (common, pruning).
"""
