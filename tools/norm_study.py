"""Which normalization for my task? ``python tools/norm_study.py CONFIG --norms bn syncbn gn
gn-ws bcn-ws --seeds 0 1 2 --gpus 2``: each preset swapped into every norm layer of CONFIG,
trained with each seed through tools/dist_train.sh (see mmbcn/study); with --pretrain CLS_CONFIG
each preset is first pretrained on CLS_CONFIG and CONFIG fine-tuned from its backbone."""

import os.path as osp

from mmbcn.study import main

if __name__ == '__main__':
    main(train_script=osp.join(osp.dirname(osp.abspath(__file__)), 'dist_train.sh'))
