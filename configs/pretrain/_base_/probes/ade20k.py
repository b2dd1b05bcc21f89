# Dense probes of the teacher during pretraining, on ADE20K (docs/probes.md):
# patch k-NN and k-means + Hungarian mIoU on 500 train / 200 val images (a fixed
# seeded subset, short side 224), at the start, every 10 epochs and at the end.
# Enable it by adding this file to a pretraining config's _base_ list (the
# published configs name it, commented out). data_root is mmseg's
# ADEChallengeData2016 folder; the run stops before its first iteration if the set
# is missing or malformed. For Pascal VOC or Cityscapes:
#   --cfg-options custom_hooks.0.probe_set.type=voc \
#                 custom_hooks.0.probe_set.data_root=data/VOCdevkit/VOC2012
custom_hooks = [
    dict(type='DenseProbeHook',
         probe_set=dict(type='ade20k', data_root='data/ade/ADEChallengeData2016',
                        max_train=500, max_val=200, short_side=224),
         interval=10, by_epoch=True, probes=('knn', 'cluster')),
]
