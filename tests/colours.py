"""Reading tickprop's picture colours back: the pixel oracle of the render tests."""
import numpy as np


def classify(rgb, margin=0.08):
    """Name the colour of an RGB triple (floats in [0, 1] or uint8): 'red', 'blue',
    'purple', 'empty' or 'other': the inverse of simulator.analysis.palette.mix."""
    rgb = np.asarray(rgb, dtype=float)[:3]
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    r, g, b = rgb
    if r - g > margin and b - g > margin:
        if r - b > 2.5 * margin:
            return "red"
        if b - r > 2.5 * margin:
            return "blue"
        return "purple"
    if r - max(g, b) > margin:
        return "red"
    if b - max(r, g) > margin:
        return "blue"
    if min(r, g, b) > 0.9:
        return "empty"
    return "other"
