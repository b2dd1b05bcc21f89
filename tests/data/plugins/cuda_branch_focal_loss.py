"""mmdet's FocalLoss taking, on any device, the branch it takes for CUDA tensors
(mmcv's ``sigmoid_focal_loss`` op, i.e. ``mmcv._ext``'s kernels): a test
plugin (``custom_imports``), so that a CPU run goes where a GPU run goes."""
from mmdet.models.losses import FocalLoss
from mmdet.models.losses.focal_loss import sigmoid_focal_loss
from mmdet.registry import MODELS

CALLS = {'n': 0}


@MODELS.register_module()
class FocalLossOnTheCUDABranch(FocalLoss):

    def forward(self, pred, target, weight=None, avg_factor=None,
                reduction_override=None):
        assert self.use_sigmoid and not self.activated and pred.dim() != target.dim()
        reduction = reduction_override or self.reduction
        CALLS['n'] += 1
        if CALLS['n'] == 1:
            print('FocalLossOnTheCUDABranch: mmcv sigmoid_focal_loss', flush=True)
        return self.loss_weight * sigmoid_focal_loss(
            pred, target, weight, gamma=self.gamma, alpha=self.alpha,
            reduction=reduction, avg_factor=avg_factor)
