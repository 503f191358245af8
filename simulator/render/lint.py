"""How a picture keys an image for the figure lint (tests/figure_lint.py): every
heat map needs a key, and an image not drawn through a colorbar of its own
says what keys it: a colorbar of a stand-in mappable (``mark_keyed``) or a
legend naming its colours as classes (``mark_categorical``).
"""
CATEGORICAL_GID = "categorical"


def mark_categorical(image):
    """Mark ``image`` as categorical (its colours are classes a legend names,
    so the lint asks for a legend, not a colorbar): gid CATEGORICAL_GID.
    Returns ``image``."""
    image.set_gid(CATEGORICAL_GID)
    return image


def mark_keyed(image, colorbar):
    """Record that ``colorbar`` (drawn from a stand-in mappable, e.g. for an RGB
    image whose shades follow a colormap) keys ``image``: both get the same gid
    (the image's, or a new one). Returns ``image``."""
    gid = image.get_gid()
    if gid is None or gid == CATEGORICAL_GID:
        gid = f"keyed-{id(image):x}"
        image.set_gid(gid)
    colorbar.ax.set_gid(gid)
    return image
