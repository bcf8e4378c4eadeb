"""The book layer: chapter parameters, reports (numbers, verdicts, claims), figures, α-sliders and
their views, executing the chapters and building the book, Colab.
"""
