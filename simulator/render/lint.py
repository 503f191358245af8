"""How a picture keys an image for the figure lint (tests/figure_lint.py): every
heat map needs a key, and an image that is not drawn through a colorbar of its
own says what keys it. ``mark_keyed(image, colorbar)``: an RGB image shaded
through a colormap keys itself with a colorbar of a stand-in
``ScalarMappable`` (the image and the colorbar's axes then share a gid);
``mark_categorical(image)`` (gid CATEGORICAL_GID): its colours are classes,
e.g. frame numbers, that a legend names.
"""
CATEGORICAL_GID = "categorical"


def mark_categorical(image):
    """Mark ``image`` as categorical (its colours are classes a legend names,
    not a scale a colorbar would show): sets its gid to CATEGORICAL_GID.
    The lint then asks for a legend instead of a colorbar. Returns ``image``."""
    image.set_gid(CATEGORICAL_GID)
    return image


def mark_keyed(image, colorbar):
    """Record that ``colorbar`` (drawn from a stand-in mappable, e.g. for an RGB
    image whose shades follow a colormap) is the key of ``image``: both the
    image and the colorbar's axes get the same gid (the image's, or a new one).
    Returns ``image``."""
    gid = image.get_gid()
    if gid is None or gid == CATEGORICAL_GID:
        gid = f"keyed-{id(image):x}"
        image.set_gid(gid)
    colorbar.ax.set_gid(gid)
    return image


__all__ = ["CATEGORICAL_GID", "mark_categorical", "mark_keyed"]
