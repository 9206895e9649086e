"""The training step against the original's: Adam, the learning-rate schedule and the
Polyak update, step by step from the golden checkpoint (tests/golden/README.md,
"Training trajectory")."""

import json
import os

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.training import Trainer


def test_training_steps_follow_the_originals_trajectory(golden_dir):
    folder = os.path.join(golden_dir, 'train_cifar_small')
    with open(os.path.join(folder, 'config.json')) as f:
        config = json.load(f)
    want = np.load(os.path.join(folder, 'trajectory.npz'))
    options = {k: config[k] for k in ('image_shape', 'nr_resnet', 'nr_filters', 'nr_logistic_mix',
                                      'resnet_nonlinearity', 'num_classes', 'dropout_p')}
    trainer = Trainer(tf.distribute.OneDeviceStrategy('/cpu:0'), options,
                      batch_size=config['batch'], learning_rate=config['learning_rate'],
                      lr_decay=config['lr_decay'], polyak_decay=config['polyak_decay'])
    trainer.start_from(os.path.join(golden_dir, config['source'], 'params_golden.ckpt'))
    start = {name: var.numpy() for name, var in trainer.model.named_weights()}

    losses, rates = [], []
    for images in want['images']:
        _, nll = trainer.train_step(images)
        losses.append(float(nll))
        rates.append(float(trainer.learning_rate.numpy()))
    np.testing.assert_allclose(losses, want['loss_nats'], rtol=1e-4)
    np.testing.assert_allclose(rates, want['learning_rates'], rtol=1e-6)

    # Weights and averages within 1% of how far the weights moved, root of summed squares
    # over all weights (tests/golden/README.md); measured 0.26% / 0.16%. Per variable a
    # float-noise gradient can flip a whole Adam step (measured worst 1.7%, deconv2d_0/V), so
    # each variable is held to 5%: a wrong learning rate, t, beta or order is off by 10-70%.
    averages = dict(zip([n for n, _ in trainer.model.named_weights()], trainer.polyak.shadows))
    moved = off_weights = off_averages = 0.0
    for name, var in trainer.model.named_weights():
        step = np.sum((want['final/' + name] - start[name]) ** 2)
        assert step > 0, name  # every weight moved, so the comparisons below can fail
        off_w = np.sum((var.numpy() - want['final/' + name]) ** 2)
        off_a = np.sum((averages[name].numpy() - want['final_avg/' + name]) ** 2)
        assert max(off_w, off_a) <= 0.05 ** 2 * step, name
        moved, off_weights, off_averages = moved + step, off_weights + off_w, off_averages + off_a
    assert np.sqrt(off_weights / moved) <= 0.01
    assert np.sqrt(off_averages / moved) <= 0.01
