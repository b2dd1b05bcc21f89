"""Probe sets of the dense probes: the real layouts (ADE20K, VOC, Cityscapes,
folders), their label conventions, size caps and the errors that name the file."""
import numpy as np
import pytest
from PIL import Image

from flsl_mm.analysis.dense_probe import IGNORE
from flsl_mm.analysis.probe_sets import ProbeSetError, build_probe_set

H, W = 32, 48  # 2 x 3 patches of 16


def write_pair(img_path, label_path, label, mode='L', palette=False):
    img_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(len(str(img_path)))
    Image.fromarray(rng.randint(0, 255, (*label.shape, 3), dtype=np.uint8)).save(
        img_path)
    im = Image.fromarray(label.astype(np.uint8), mode)
    if palette:
        im = im.convert('P')  # indices = values: a palette PNG as VOC's
        im.putpalette([(i * 37) % 256 for i in range(768)])
    im.save(label_path)


def block_label(values):
    """A 2 x 3 grid of 16 x 16 blocks with these values (row-major)."""
    return np.kron(np.asarray(values).reshape(2, 3), np.ones((16, 16), np.int64))


def ade20k(root, n_train=3, n_val=2):
    for split, n in (('training', n_train), ('validation', n_val)):
        for i in range(n):
            write_pair(root / 'images' / split / f'ADE_{split}_{i:03d}.jpg',
                       root / 'annotations' / split / f'ADE_{split}_{i:03d}.png',
                       block_label([0, 1, 2, 150, 3, i + 1]))
    return root


def test_ade20k_reduces_zero_label(tmp_path):
    ps = build_probe_set(dict(type='ade20k', data_root=str(ade20k(tmp_path)),
                              short_side=None))
    assert ps.num_classes == 150 and len(ps.train.images) == 3
    train, val = ps.load(16)
    # 0 ("other") -> ignored, 1..150 -> 0..149
    assert train.patch_labels[1].tolist() == [IGNORE, 0, 1, 149, 2, 1]
    assert val.images[0].shape == (H, W, 3)


def test_voc_palette_labels_are_indices(tmp_path):
    root = tmp_path / 'VOC2012'
    for split, ids in (('train', ['a', 'b']), ('val', ['c'])):
        (root / 'ImageSets' / 'Segmentation').mkdir(parents=True, exist_ok=True)
        (root / 'ImageSets' / 'Segmentation' / f'{split}.txt').write_text(
            '\n'.join(ids) + '\n')
        for i in ids:
            write_pair(root / 'JPEGImages' / f'{i}.jpg',
                       root / 'SegmentationClass' / f'{i}.png',
                       block_label([0, 20, 255, 5, 5, 1]), palette=True)
    ps = build_probe_set(dict(type='voc', data_root=str(root), short_side=None))
    assert ps.num_classes == 21
    train, val = ps.load(16)
    assert [len(train.images), len(val.images)] == [2, 1]
    assert val.patch_labels[0].tolist() == [0, 20, IGNORE, 5, 5, 1]


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    root = tmp_path / 'cityscapes'
    for split in ('train', 'val'):
        write_pair(root / 'leftImg8bit' / split / 'ulm' / 'ulm_000000_000019_leftImg8bit.png',
                   root / 'gtFine' / split / 'ulm' / 'ulm_000000_000019_gtFine_labelIds.png',
                   block_label([7, 26, 0, 33, 1, 24]))
    ps = build_probe_set(dict(type='cityscapes', data_root=str(root), short_side=None))
    _, val = ps.load(16)
    assert val.patch_labels[0].tolist() == [0, 13, IGNORE, 18, IGNORE, 11]


def test_caps_draw_a_seeded_subset_and_short_side_scales(tmp_path):
    root = ade20k(tmp_path, n_train=6, n_val=4)
    spec = dict(type='ade20k', data_root=str(root), max_train=3, max_val=2)
    a = build_probe_set(dict(spec, short_side=16), seed=0)
    assert a.train.images == build_probe_set(dict(spec), seed=0).train.images
    assert len(a.train.images) == 3 and len(a.val.images) == 2
    assert a.train.images == sorted(a.train.images)  # kept in file order
    others = {tuple(build_probe_set(spec, seed=s).train.images) for s in range(6)}
    assert len(others) > 1  # the seed chooses the subset
    train, _ = a.load(8)
    # 32 x 48 -> short side 16: 16 x 24 (labels by nearest neighbour)
    assert train.images[0].shape == (16, 24, 3)
    assert train.patch_labels[0].shape == (2 * 3,)


def test_folder_with_an_ignore_index(tmp_path):
    write_pair(tmp_path / 'img' / 'x.png', tmp_path / 'lab' / 'x.png',
               block_label([0, 1, 9, 9, 2, 0]))
    ps = build_probe_set(dict(type='folder', train_img_dir=str(tmp_path / 'img'),
                              train_label_dir=str(tmp_path / 'lab'),
                              val_img_dir=str(tmp_path / 'img'),
                              val_label_dir=str(tmp_path / 'lab'), num_classes=3,
                              ignore_index=9, short_side=None))
    train, _ = ps.load(16)
    assert train.patch_labels[0].tolist() == [0, 1, IGNORE, IGNORE, 2, 0]


def test_bad_probe_sets_name_the_file(tmp_path):
    with pytest.raises(ProbeSetError, match=f'{tmp_path / "nowhere"}: ADE20K data_root'):
        build_probe_set(dict(type='ade20k', data_root=str(tmp_path / 'nowhere')))
    root = ade20k(tmp_path / 'ade')
    (root / 'images' / 'validation' / 'ADE_validation_001.jpg').unlink()
    with pytest.raises(ProbeSetError, match='images/validation: no images') as e:
        for p in (root / 'images' / 'validation').iterdir():
            p.unlink()
        build_probe_set(dict(type='ade20k', data_root=str(root)))
    root = ade20k(tmp_path / 'ade2')
    bad = root / 'annotations' / 'training' / 'ADE_training_001.png'
    Image.fromarray(np.zeros((H, W + 16), np.uint8)).save(bad)
    ps = build_probe_set(dict(type='ade20k', data_root=str(root)))
    with pytest.raises(ProbeSetError, match=f'{bad}: label size 64x32 differs from '
                       "its image's 48x32"):
        ps.load(16)
    root = ade20k(tmp_path / 'ade3')
    bad = root / 'annotations' / 'validation' / 'ADE_validation_000.png'
    Image.fromarray(np.full((H, W), 151, np.uint8)).save(bad)
    with pytest.raises(ProbeSetError, match=f'{bad}: class id 151 out of range'):
        build_probe_set(dict(type='ade20k', data_root=str(root))).load(16)
    root = ade20k(tmp_path / 'ade4')
    (root / 'annotations' / 'training' / 'ADE_training_002.png').unlink()
    with pytest.raises(ProbeSetError, match='ADE_training_002.png: label PNG missing'):
        build_probe_set(dict(type='ade20k', data_root=str(root)))
    root = ade20k(tmp_path / 'ade5')
    broken = root / 'images' / 'training' / 'ADE_training_000.jpg'
    broken.write_bytes(b'not a jpeg')
    with pytest.raises(ProbeSetError, match=f'{broken}: missing or cannot be decoded'):
        build_probe_set(dict(type='ade20k', data_root=str(root))).load(16)
    with pytest.raises(ProbeSetError, match="type 'ade'.*expected one of"):
        build_probe_set(dict(type='ade', data_root=str(root)))
    with pytest.raises(ProbeSetError, match=r"unknown argument\(s\) \['max_imgs'\]"):
        build_probe_set(dict(type='ade20k', data_root=str(root), max_imgs=3))


def test_demo_boxes_only_at_the_images_own_size(demo_root):
    """The bbox probe's COCO boxes are in image pixels: a scaled demo set has none
    (DenseProbeHook then refuses probes=('bbox',))."""
    plain = build_probe_set(dict(type='demo', data_root=str(demo_root)))
    assert plain.train.ann_file.endswith('instances_train.json')
    assert plain.num_classes == 6 and len(plain.train.images) == 16
    scaled = build_probe_set(dict(type='demo', data_root=str(demo_root), short_side=64))
    assert scaled.train.ann_file is None and scaled.val.ann_file is None


def test_images_are_decoded_as_the_training_loader_does(tmp_path):
    """A JPEG with an EXIF orientation tag (rotate 90): the pretraining loader uses
    it as stored (PIL's way), and its label PNG is stored the same way; OpenCV's
    imread would rotate the image (and refuse the label as another size)."""
    from flsl_mm.datasets.transforms.loading import LoadImageLikeImageFolder
    root = ade20k(tmp_path / 'ade')
    path = root / 'images' / 'training' / 'ADE_training_000.jpg'
    stored = np.asarray(Image.open(path).convert('RGB'))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise when shown
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    import cv2
    assert cv2.imread(str(path), cv2.IMREAD_COLOR).shape[:2] == (W, H)  # rotated
    train, _ = build_probe_set(dict(type='ade20k', data_root=str(root),
                                    short_side=None)).load(16)
    want = LoadImageLikeImageFolder().transform(dict(img_path=str(path)))['img']
    assert want.shape[:2] == (H, W)
    assert np.array_equal(train.images[0], want)
