import logging

import numpy as np
import pytest
from mmengine.logging import MMLogger

from flsl_mm.datasets.uavdt import (UAVDTDataset, UAVDTFormatError, load_index,
                                    make_uavdt_demo, parse_annotation_file)
from flsl_mm.datasets.uavdt import format as uavdt_format


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path / 'cache'))


def _dataset(root, **kw):
    kw.setdefault('pipeline', [])
    kw.setdefault('test_mode', True)
    return UAVDTDataset(data_root=str(root), **kw)


def _strip_paths(ds):
    out = []
    for i in range(len(ds)):
        d = dict(ds.get_data_info(i))
        d.pop('img_path')
        d.pop('sample_idx', None)
        out.append(d)
    return out


def test_layouts_parse_to_the_same_data(tmp_path):
    roots = [make_uavdt_demo(tmp_path / 'l1', layout=1),
             make_uavdt_demo(tmp_path / 'l2', layout=2, prefix=''),
             make_uavdt_demo(tmp_path / 'l3', layout=3)]
    assert (roots[0] / 'UAV-benchmark-M/M0101/img1/img000001.jpg').is_file()
    assert (roots[1] / 'UAV-benchmark-M/M0101/000001.jpg').is_file()
    assert (roots[1] / 'UAV-benchmark-MOTD_v1.0/GT/M0101_gt_whole.txt').is_file()
    lists = [_strip_paths(_dataset(r, split='all')) for r in roots]
    assert lists[0] == lists[1] == lists[2]
    assert len(lists[0]) == 5 * 8
    first = lists[0][0]
    assert (first['height'], first['width']) == (96, 160)
    assert any(i['ignore_flag'] == 1 for i in first['instances'])


def test_frame_numbers_match_image_files(tmp_path):
    ds = _dataset(make_uavdt_demo(tmp_path / 'd', layout=1), split='all')
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert info['img_path'].endswith(f"img{info['frame']:06d}.jpg")
        assert info['img_path'].split('/')[-3] == info['sequence']


def test_frame_stride_split_and_sequences(tmp_path):
    root = make_uavdt_demo(tmp_path / 'd', layout=2)
    train = _dataset(root, split='train')
    test = _dataset(root, split='test')
    assert sorted({d['sequence'] for d in _strip_paths(train)}) == \
        ['M0101', 'M0204', 'M0401']
    assert sorted({d['sequence'] for d in _strip_paths(test)}) == ['M0203', 'M0205']
    strided = _dataset(root, split='train', frame_stride=3)
    assert sorted({d['frame'] for d in _strip_paths(strided)}) == [1, 4, 7]
    only = _dataset(root, sequences=['M0203'])
    assert {d['sequence'] for d in _strip_paths(only)} == {'M0203'}
    with pytest.raises(KeyError, match='M9999'):
        _dataset(root, sequences=['M9999'])


def test_sequence_without_gt_is_skipped_with_one_warning(tmp_path):
    root = make_uavdt_demo(tmp_path / 'd', layout=1)
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        ds = _dataset(root, split='all')
    finally:
        logger.removeHandler(handler)
    warnings = [r for r in records if 'no ground truth' in r]
    assert len(warnings) == 1 and 'M0901' in warnings[0]
    assert 'M0901' not in {d['sequence'] for d in _strip_paths(ds)}


def test_parser_tolerates_real_file_quirks_and_names_bad_lines(tmp_path):
    f = tmp_path / 'M0101_gt_whole.txt'
    f.write_bytes(b'1,1,10,20,30,40,1,1,1,\r\n\r\n2,1,11,21,30,40,1,1,2\r\n'
                  b'  3, 1, 12, 22, 30, 40, 1, 1, 3 ,\n\n')
    rows = parse_annotation_file(f)
    assert rows.shape == (3, 9) and rows[:, 8].tolist() == [1, 2, 3]
    f.write_text('1,1,10,20,30,40,1,1,1\n2,1,11,x,30,40,1,1,2\n')
    with pytest.raises(UAVDTFormatError, match=r'M0101_gt_whole.txt:2: not an integer'):
        parse_annotation_file(f)
    f.write_text('1,1,10,20,30,0,1,1,1\n')
    with pytest.raises(UAVDTFormatError, match=r'M0101_gt_whole.txt:1: box of zero size'):
        parse_annotation_file(f)
    f.write_text('1,1,10,20,30,40,1,1,1\n\n2,1,11,21\n')
    with pytest.raises(UAVDTFormatError, match=r'M0101_gt_whole.txt:3: expected 9'):
        parse_annotation_file(f)


def test_bad_category_and_missing_root(tmp_path):
    root = make_uavdt_demo(tmp_path / 'd', layout=1, with_no_gt_sequence=False)
    whole = root / 'UAV-benchmark-M/M0101/gt/gt_whole.txt'
    whole.write_text('1,1,10,20,30,40,1,1,7\n1,2,10,20,-3,40,1,1,1\n'
                     '1,3,10,20,30,40,1,1,2\n')
    ds = _dataset(root, split='all')  # the invalid rows named and left out
    assert [(r['line'], r['reason']) for r in ds.invalid_annotations] == [
        (1, 'category 7 is not 1 (car), 2 (truck) or 3 (bus)'),
        (2, 'box of negative size (-3 x 40)')]
    assert all(r['path'] == str(whole) for r in ds.invalid_annotations)
    frame = next(d for d in map(ds.get_data_info, range(len(ds)))
                 if d['sequence'] == 'M0101' and d['frame'] == 1)
    assert [i['bbox_label'] for i in frame['instances'] if not i['ignore_flag']] == [1]
    with pytest.raises(UAVDTFormatError, match=r'gt_whole.txt:1: category 7'):
        parse_annotation_file(whole, categories=(1, 3))
    with pytest.raises(FileNotFoundError, match='UAV-benchmark-M'):
        _dataset(tmp_path / 'nowhere')


def test_index_cache_reused_and_invalidated(tmp_path, monkeypatch):
    root = make_uavdt_demo(tmp_path / 'd', layout=1)
    first, _ = load_index(root)
    calls = []
    real = uavdt_format.index_sequence
    monkeypatch.setattr(uavdt_format, 'index_sequence',
                        lambda seq: calls.append(seq.name) or real(seq))
    again, _ = load_index(root)
    assert calls == [] and again.keys() == first.keys()
    whole = root / 'UAV-benchmark-M/M0204/gt/gt_whole.txt'
    whole.write_text(whole.read_text().replace('\r\n', '\n') + '1,99,1,1,5,5,1,1,3\n')
    changed, _ = load_index(root)
    assert calls == ['M0204']
    labels = changed['M0204']['frames'][1]['labels']
    assert len(labels) == len(first['M0204']['frames'][1]['labels']) + 1
    assert labels.tolist()[-1] == 2  # the appended bus (category 3)
    np.testing.assert_array_equal(changed['M0101']['frames'][1]['bboxes'],
                                  first['M0101']['frames'][1]['bboxes'])


def test_demo_tree_with_other_settings_is_refused(tmp_path):
    from flsl_mm.datasets.uavdt import ensure_uavdt_demo
    root = ensure_uavdt_demo(tmp_path / 'd', num_frames=4)
    assert ensure_uavdt_demo(root, num_frames=4) == root  # same settings: reused
    with pytest.raises(FileExistsError, match='num_frames: 4 there, 5 asked'):
        ensure_uavdt_demo(root, num_frames=5)
    (root / 'demo.json').unlink()  # as a tree from an earlier flsl_mm
    with pytest.raises(FileExistsError, match='earlier flsl_mm'):
        ensure_uavdt_demo(root, num_frames=4)


def test_demo_sequences_hold_all_three_classes(tmp_path):
    ds = _dataset(make_uavdt_demo(tmp_path / 'd', layout=1), split='test')
    labels = {i['bbox_label'] for d in _strip_paths(ds) for i in d['instances']
              if not i['ignore_flag']}
    assert labels == {0, 1, 2}
