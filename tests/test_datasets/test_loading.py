"""LoadImageLikeImageFolder decodes as torchvision's ImageFolder (the FLSL / DINO
reference loaders): EXIF orientation ignored, CMYK converted PIL's way; bad files
are named."""
import io
import os

import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from PIL import Image

from flsl_mm.datasets import LoadImageLikeImageFolder


def _reference(path):
    with open(path, 'rb') as f:
        return np.asarray(Image.open(f).convert('RGB'))[..., ::-1]  # as BGR


def test_exif_orientation_is_ignored_as_the_reference_does(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 256, (40, 60, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / 'rotated.jpg'
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    out = LoadImageLikeImageFolder()(dict(img_path=str(path)))
    assert out['img'].shape == (40, 60, 3) and out['img_shape'] == (40, 60)
    assert np.array_equal(out['img'], _reference(path))
    # mmcv's OpenCV loader rotates it: what the pretraining configs no longer use
    assert LoadImageFromFile()(dict(img_path=str(path)))['img'].shape == (60, 40, 3)


def test_cmyk_is_converted_pils_way(tmp_path):
    cmyk = np.random.RandomState(1).randint(0, 256, (32, 48, 4)).astype(np.uint8)
    path = tmp_path / 'cmyk.jpg'
    Image.fromarray(cmyk, mode='CMYK').save(path, quality=95)
    assert Image.open(path).mode == 'CMYK'
    out = LoadImageLikeImageFolder()(dict(img_path=str(path)))
    assert out['img'].dtype == np.uint8 and out['img'].flags.c_contiguous
    assert np.array_equal(out['img'], _reference(path))
    cv2_way = LoadImageFromFile()(dict(img_path=str(path)))['img']
    assert not np.array_equal(cv2_way, out['img'])  # OpenCV converts otherwise


@pytest.mark.parametrize('kind', ['420', '444', 'progressive', 'gray', 'png'])
def test_fast_jpeg_decoding_is_bitwise_pils_in_both_layouts(tmp_path, kind):
    """Colour and gray JPEGs go through torchvision's decode_jpeg: the same
    pixels as PIL; other files through PIL."""
    import torch
    from flsl_mm.datasets.transforms.loading import jpeg_components
    rng = np.random.RandomState(2)
    rgb = (np.kron(rng.rand(9, 13, 3), np.ones((7, 7, 1))) * 230 +
           rng.rand(63, 91, 3) * 25).astype(np.uint8)
    img = Image.fromarray(rgb[..., 0] if kind == 'gray' else rgb)
    path = tmp_path / ('x.png' if kind == 'png' else 'x.jpg')
    options = dict(quality=88, subsampling={'444': 0}.get(kind, 2),
                   progressive=kind == 'progressive')
    img.save(path, **({} if kind == 'png' else options))
    assert jpeg_components(path.read_bytes()) == {'gray': 1, 'png': None}.get(kind, 3)
    ref = _reference(path)
    out = LoadImageLikeImageFolder()(dict(img_path=str(path)))
    assert np.array_equal(out['img'], ref) and out['img'].flags.c_contiguous
    tensor = LoadImageLikeImageFolder(to_tensor=True)(dict(img_path=str(path)))
    assert tensor['img'].dtype == torch.uint8 and tensor['img'].shape[0] == 3
    assert np.array_equal(tensor['img'].permute(1, 2, 0).numpy(), ref[..., ::-1])
    assert tensor['img_shape'] == out['img_shape'] == (63, 91)


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(ValueError, match='nothere.jpg: image file not found'):
        LoadImageLikeImageFolder()(dict(img_path=str(tmp_path / 'nothere.jpg')))
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
    with pytest.raises(ValueError, match='broken.jpg: cannot decode the image'):
        LoadImageLikeImageFolder()(dict(img_path=str(bad)))
    good = tmp_path / 'good.jpg'
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(good)
    cut = tmp_path / 'cut.jpg'
    cut.write_bytes(good.read_bytes()[:200])  # truncated inside the scan
    with pytest.raises(ValueError, match='cut.jpg: truncated JPEG'):
        LoadImageLikeImageFolder(to_tensor=True)(dict(img_path=str(cut)))


@pytest.mark.parametrize('kind', ['no_eoi', 'empty', 'text', 'tiny', 'tall_png',
                                  'huge_jpeg'])
def test_bad_files_get_their_reason(tmp_path, kind):
    from flsl_mm.datasets.bad_samples import BadSampleError
    from flsl_mm.datasets.transforms.loading import MAX_SIDE
    path = tmp_path / f'{kind}.jpg'
    good = io.BytesIO()
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(good, 'JPEG')
    data = good.getvalue()
    if kind == 'no_eoi':  # every scan byte there, only the end marker lost
        path.write_bytes(data[:-2])
        reason = 'truncated JPEG: no end-of-image marker'
    elif kind == 'empty':
        path.write_bytes(b'')
        reason = r'the file is empty \(0 bytes\)'
    elif kind == 'text':
        path.write_text('not an image\n')
        reason = 'cannot decode the image'
    elif kind == 'tiny':
        Image.new('RGB', (1, 1)).save(path, 'PNG')
        reason = 'the image is 1x1 px, smaller than 8 px a side'
    elif kind == 'tall_png':
        Image.new('L', (8, MAX_SIDE + 1)).save(path, 'PNG')
        reason = f'the image is 8x{MAX_SIDE + 1} px, larger than {MAX_SIDE} px'
    else:  # the frame header says 40000 px wide: refused before decoding
        header = bytearray(data)
        sof = header.index(b'\xff\xc0')
        header[sof + 7:sof + 9] = (40000).to_bytes(2, 'big')
        path.write_bytes(bytes(header))
        reason = f'the image is 40000x40 px, larger than {MAX_SIDE} px'
    for to_tensor in (False, True):
        with pytest.raises(BadSampleError, match=f'{kind}.jpg: {reason}') as info:
            LoadImageLikeImageFolder(to_tensor=to_tensor)(dict(img_path=str(path)))
        assert info.value.path == str(path)


def test_a_file_that_changes_while_read_is_named(tmp_path, monkeypatch):
    import flsl_mm.datasets.transforms.loading as loading
    path = tmp_path / 'growing.jpg'
    Image.new('RGB', (16, 16)).save(path, 'JPEG')
    real, calls = os.fstat, []

    def fstat(fd):  # the second look (after reading) sees a longer file
        calls.append(fd)
        stat = real(fd)
        if len(calls) == 2:
            with open(path, 'ab') as f:
                f.write(b'more')
            stat = real(fd)
        return stat
    monkeypatch.setattr(loading.os, 'fstat', fstat)
    with pytest.raises(ValueError, match='growing.jpg: the file changed while '
                       'being read'):
        LoadImageLikeImageFolder()(dict(img_path=str(path)))
