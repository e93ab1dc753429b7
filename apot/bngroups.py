"""BatchNorm over batch groups: one device training as the authors' two-GPU DataParallel did.

Under nn.DataParallel every batch is split with torch.chunk, one slice per GPU, and each GPU's
replica normalises its slice with that slice's own mean and variance. Only the replica on the
first GPU updates the running statistics that evaluation uses (its buffers are the module's
own; the others' updates are discarded). The loss is taken over all outputs gathered on the
first GPU, so the gradients are the sum of the slices'. `split_batchnorm(model, K)` makes every
BatchNorm2d of a model do exactly that in training mode, on one device; evaluation is unchanged.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from apot.errors import UserError


def check_bn_groups(groups, local_batch):
    """--bn-groups K: between 1 and the per-process batch (every slice holds an image)."""
    if not 1 <= groups <= local_batch:
        raise UserError(f"--bn-groups {groups}: must be between 1 and the per-process batch "
                        f"({local_batch})")


class GroupBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training forward normalises each of `groups` torch.chunk slices of the
    batch by itself; the first slice alone updates the running statistics."""

    groups = 1

    def forward(self, x):
        if not self.training or self.groups == 1:
            return super().forward(x)
        first, *rest = x.chunk(self.groups)
        # Batch statistics only (no running buffers) for the other slices: the discarded replicas.
        return torch.cat([super().forward(first)] + [
            F.batch_norm(s, None, None, self.weight, self.bias, True, 0.0, self.eps) for s in rest])


def split_batchnorm(model, groups):
    """Every BatchNorm2d of model normalises `groups` slices of the batch apart (in place; the
    parameters, buffers and state-dict keys stay the same). groups = 1 leaves model untouched."""
    if groups > 1:
        for m in model.modules():
            if type(m) in (nn.BatchNorm2d, GroupBatchNorm2d):
                m.__class__ = GroupBatchNorm2d  # same object: the optimizer's parameters stay its
                m.groups = groups
    return model
