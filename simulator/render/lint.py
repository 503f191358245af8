"""How a picture keys an image for the figure lint (tests/figure_lint.py): an
image without a colorbar of its own is keyed by a stand-in colorbar
(``mark_keyed``) or by a legend naming its colours as classes (``mark_categorical``).
"""
CATEGORICAL_GID = "categorical"


def mark_categorical(image):
    """Mark ``image`` as keyed by a legend (gid CATEGORICAL_GID); returns ``image``."""
    image.set_gid(CATEGORICAL_GID)
    return image


def mark_keyed(image, colorbar):
    """Give ``colorbar`` (of a stand-in mappable, e.g. for an RGB image whose shades
    follow a colormap) the gid of ``image`` (a new one if none); returns ``image``."""
    gid = image.get_gid()
    if gid is None or gid == CATEGORICAL_GID:
        gid = f"keyed-{id(image):x}"
        image.set_gid(gid)
    colorbar.ax.set_gid(gid)
    return image
