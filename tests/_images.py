"""Small image-writing helpers shared by test modules (``from _images import write_image``)."""
import SimpleITK as sitk


def write_image(arr, path, spacing=None, origin=None):
    """Write ``arr`` (numpy, SimpleITK axis order reversed) with optional spacing/origin; returns the path."""
    img = sitk.GetImageFromArray(arr)
    if spacing is not None:
        img.SetSpacing(spacing)
    if origin is not None:
        img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return str(path)
