"""Training: data set -> run folder (`python -m training.train`, `make train`).

(What every command shares, its argparse types, Ctrl-C handling, TensorFlow start-up and CPU
line, is in runtime/.)

Module map, in the order a run uses them:
  train.py       the CLI: options in, then run.py
  run.py         one run: the folder claimed, precision and data, the trainer, the outputs
  run_folder.py  the run folder's files: making and claiming it, train.log
  run_options.py the options a run started with (run.json): what a re-run may change
  config.py      every recipe and hyper-parameter in one place (`fast`, `long`, `vgg`...)
  hardware.py    the precision and filter-gradient form that train fastest on this CPU
  data.py        image-folder trees, tars and the CIFAR-10 archive -> uint8 arrays, cached
  models.py      the `fast` and `vgg` networks, built from the recipe's widths and depth
  layers.py      their custom layers: the fused BatchNorm, the XLA-fused GELU and the conv
                 whose filter gradient can run as nine matmuls
  flops.py       forward FLOPs per image, the work unit of the benchmarks
  augment.py     flip, translate and cutout on the training batches
  optim.py       the recipes' optimizers and learning-rate schedules
  trainer.py     the resumable step loop: progress lines, epoch history, checkpoints
  checkpoint.py  the whole training state in one file, replaced atomically
  run_model.py   a finished run's network rebuilt for inference from meta.json and its weights
  fold.py        the `fast` net in its serving form: BatchNorms and scales in the convs
  inference.py   batched prediction with test-time augmentation (training, export, evaluate)
  run_outputs.py what a finished run leaves: model, weights, meta.json, history, curves
  metrics.py     accuracy, per-class precision and recall, the confusion matrix
  plots.py       training curves and the confusion matrix
  evaluate.py    `python -m training.evaluate`: the evaluation report of a run or a SavedModel
"""
