"""flags.py: the original's flags by long and short name with its defaults, and clear refusals."""

import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags as absl_flags
from absl.testing import flagsaver

import flags as train_flags

FLAGS = absl_flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (long name, short name, default) of openai/pixel-cnn's train.py, and the fork's three.
ORIGINAL = [
    ('save_interval', 't', 20), ('load_params', 'r', False), ('data_set', 'd', 'cifar'),
    ('nr_resnet', 'q', 5), ('nr_filters', 'n', 160), ('nr_logistic_mix', 'm', 10),
    ('resnet_nonlinearity', 'z', 'concat_elu'), ('class_conditional', 'c', False),
    ('energy_distance', 'ed', False), ('learning_rate', 'l', 0.001), ('lr_decay', 'e', 0.999995),
    ('batch_size', 'b', 16), ('init_batch_size', 'u', 16), ('dropout_p', 'p', 0.5),
    ('max_epochs', 'x', 5000), ('nr_gpu', 'g', 8), ('polyak_decay', None, 0.9995),
    ('num_samples', 'ns', 1), ('seed', 's', 1),
    ('add_coords', 'ac', False), ('non_local', 'nl', False), ('focal_loss', 'fl', False),
]


@pytest.fixture(autouse=True)
def _restore_flags():
    with flagsaver.flagsaver():
        yield
    FLAGS.unparse_flags()


def parse(*argv):
    FLAGS.unparse_flags()
    FLAGS(['train.py'] + list(argv))
    return FLAGS


@pytest.mark.parametrize('name, short, default', ORIGINAL)
def test_original_flag_keeps_its_names_and_default(name, short, default):
    assert FLAGS[name].short_name == short
    assert FLAGS[name].default == default


def test_folders_default_under_home_not_the_original_paths():
    for name, short in (('data_dir', 'i'), ('save_dir', 'o')):
        assert FLAGS[name].short_name == short
        assert FLAGS[name].default.startswith('~/pxpp/')


@pytest.mark.parametrize('name', ['cifar', 'imagenet', 'mnist', 'folder', 'patches'])
def test_data_set_accepts_every_loader(name):
    assert parse('-d', name).data_set == name


def test_short_names_parse_like_the_original():
    values = parse('-i', '/d', '-o', '/s', '-d', 'patches', '-t', '3', '-r', '-q', '2', '-n', '8',
                   '-m', '3', '-z', 'elu', '-c', '-l', '0.01', '-e', '0.9', '-b', '4', '-u', '8',
                   '-p', '0.1', '-x', '7', '-g', '2', '--polyak_decay', '0.9', '-ns', '2',
                   '-s', '5', '-ac', '-nl', '-fl')
    assert (values.data_dir, values.save_dir, values.data_set, values.save_interval) == \
        ('/d', '/s', 'patches', 3)
    assert values.load_params and values.class_conditional
    assert (values.nr_resnet, values.nr_filters, values.nr_logistic_mix) == (2, 8, 3)
    assert values.resnet_nonlinearity == 'elu'
    assert (values.learning_rate, values.lr_decay, values.batch_size, values.init_batch_size) == \
        (0.01, 0.9, 4, 8)
    assert (values.dropout_p, values.max_epochs, values.nr_gpu, values.polyak_decay) == \
        (0.1, 7, 2, 0.9)
    assert (values.num_samples, values.seed) == (2, 5)
    assert values.add_coords and values.non_local and values.focal_loss
    assert parse('-ed').energy_distance


def test_long_names_parse_with_equals():
    values = parse('--nr_gpu=3', '--nl_levels=0,2', '--focal_gamma=1.5', '--nodownload',
                   '--image_size=64', '--save_steps=5')
    assert values.nr_gpu == 3 and values.nl_levels == ['0', '2'] and values.focal_gamma == 1.5
    assert not values.download and values.image_size == 64 and values.save_steps == 5


@pytest.mark.parametrize('argv, names', [
    (['-d', 'svhn'], '--data_set'),
    (['-z', 'tanh'], '--resnet_nonlinearity'),
    (['-g', '0'], '--nr_gpu'),
    (['-b', '-4'], '--batch_size'),
    (['-p', '1.0'], '--dropout_p'),
    (['-l', '0'], '--learning_rate'),
    (['-l', 'nan'], '--learning_rate'),
    (['-e', '1.5'], '--lr_decay'),
    (['--polyak_decay', '1'], '--polyak_decay'),
    (['-ns', '-1'], '--num_samples'),
    (['--nl_levels', '1,3'], '--nl_levels'),
    (['-fl', '-ed'], '--energy_distance'),
    (['-fl', '--focal_gamma', '-1'], '--focal_gamma'),
    (['-s', '-5'], '--seed'),
    (['-o', ''], '--save_dir'),
    (['-i', ''], '--data_dir'),
    (['--worker_timeout', '-1'], '--worker_timeout'),
    (['--worker_port', '70000'], '--worker_port'),
])
def test_bad_value_is_refused_naming_the_flag(argv, names):
    with pytest.raises(absl_flags.Error, match=names):
        parse(*argv)


def test_bad_value_on_the_command_line_is_one_message_and_exit_1():
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '-d', 'svhn'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if 'error' in line.lower()]
    assert len(errors) == 1 and '--data_set' in errors[0] and 'svhn' in errors[0]


def test_unknown_flag_suggests_the_right_one():
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--nr_gpus', '2'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert "Unknown command line flag 'nr_gpus'" in result.stderr and 'nr_gpu' in result.stderr


def test_train_flags_are_the_originals_and_ours_not_sample_py_s():
    names = set(train_flags.TRAIN_FLAGS)
    assert {name for name, _, _ in ORIGINAL} | {'data_dir', 'save_dir'} <= names
    assert {'nl_levels', 'focal_gamma', 'image_size', 'download', 'multi_worker', 'jit_compile',
            'save_steps', 'keep_checkpoints'} <= names
    assert not names & {'checkpoint', 'pretrained', 'method', 'output'}


def test_choices_spelled_out_in_flags_are_the_librarys():
    from pixel_cnn_pp import config, sampling

    assert FLAGS['resnet_nonlinearity'].parser.enum_values == list(config.NONLINEARITIES)
    assert FLAGS['method'].parser.enum_values == list(sampling.METHODS)
    assert [int(level) for level in train_flags.NL_LEVELS] == list(config.NL_LEVELS)
    from pixel_cnn_pp import precision

    assert FLAGS['precision'].parser.enum_values == list(precision.PRECISIONS)
    assert FLAGS['eval_precision'].parser.enum_values == list(precision.PRECISIONS)


def _help(script, flag='--help'):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), flag],
                            capture_output=True, text=True, timeout=60)
    assert 'Traceback' not in result.stderr, result.stderr[-2000:]
    return result.stdout


TRAINING_ONLY_FLAGS = ['--learning_rate', '--lr_decay', '--save_steps', '--multi_worker',
                       '--worker_port',
                       '--focal_loss', '--save_interval', '--max_epochs', '--load_params',
                       '--keep_checkpoints', '--polyak_decay', '--dropout_p']


def test_sample_py_help_lists_its_flags_and_none_of_training():
    text = _help('sample.py')
    listed = set(re.findall(r'^  (?:-\w+,)?--(?:\[no\])?(\w+)', text, re.M))
    assert {'checkpoint', 'num_samples', 'pretrained', 'method', 'output', 'eval', 'labels',
            'use_ema', 'seed', 'nr_resnet', 'nr_filters', 'data_set', 'nr_gpu'} <= listed
    assert not listed & {flag[2:] for flag in TRAINING_ONLY_FLAGS}, listed
    # --num_samples as sample.py reads it: images, 16 by default.
    assert re.search(r'--num_samples: How many images to draw.*\n\s+\(default: \'16\'\)', text)
    assert _help('sample.py', '--helpshort') == text


def test_compress_py_help_lists_its_flags_and_none_it_refuses():
    import compress

    text = _help('compress.py')
    listed = set(re.findall(r'^  (?:-\w+,)?--(?:\[no\])?(\w+)', text, re.M))
    assert {'compress', 'decompress', 'output', 'batch_size', 'checkpoint', 'save_dir',
            'pretrained', 'use_ema', 'labels', 'nr_resnet', 'precision'} <= listed, listed
    assert not listed & (set(compress.SAMPLING_FLAGS) | {f[2:] for f in TRAINING_ONLY_FLAGS})
    assert re.search(r'--batch_size: --compress: how many images are coded together', text)


def test_train_py_help_lists_the_training_flags_and_none_of_sample_py_s():
    text = _help('train.py')
    listed = set(re.findall(r'^  (?:-\w+,)?--(?:\[no\])?(\w+)', text, re.M))
    assert {flag[2:] for flag in TRAINING_ONLY_FLAGS} | {'num_samples', 'seed', 'nr_resnet'} \
        <= listed
    assert not listed & {'checkpoint', 'pretrained', 'method', 'output', 'eval'}, listed
    assert re.search(r'--num_samples: How many batches', text)


def test_every_flag_belongs_to_train_py_or_sample_py_by_the_rule():
    names = {f.name for f in FLAGS.get_flags_for_module(train_flags)}
    assert names == (set(train_flags.TRAIN_FLAGS) | set(train_flags.sample_flags())
                     | set(train_flags.COMPRESS_FLAGS))  # compress.py's own, not sample.py's
    assert not set(train_flags.COMPRESS_FLAGS) & set(train_flags.sample_flags())
    assert set(train_flags.SHARED_FLAGS) <= set(train_flags.TRAIN_FLAGS)
    assert set(train_flags.SAMPLE_PY_HELP) <= set(train_flags.SHARED_FLAGS)


@pytest.mark.parametrize('script, argv, message', [
    ('sample.py', ['-l', '0.1'], 'sample.py: error: -l/--learning_rate is a flag of train.py, '
     'which sample.py does not use (python3 sample.py --help lists the flags of sample.py)'),
    ('sample.py', ['--save_steps', '5'], 'sample.py: error: --save_steps is a flag of train.py'),
    ('train.py', ['--checkpoint', 'x'], 'train.py: error: --checkpoint is a flag of sample.py'),
    ('train.py', ['--compress', 'x'], 'train.py: error: --compress is a flag of compress.py'),
    ('sample.py', ['--decompress', 'x.pxpp'],
     'sample.py: error: --decompress is a flag of compress.py'),
    ('compress.py', ['--decompress', 'x.pxpp', '--score', 'x'],
     'compress.py: error: --score is a flag of sample.py, which compress.py does not use'),
])
def test_the_other_scripts_flag_is_refused_naming_it(script, argv, message):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *argv],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if 'error' in line]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr[-2000:]


def test_flags_json_holds_the_values_used(monkeypatch):
    import train

    monkeypatch.setenv('HOME', '/home/someone')
    parse('-i', '~/data', '--nl_levels', '2,0', '--init_checkpoint', '~/ckpt/params_cifar.ckpt')
    values = train.arguments_from_flags().flag_values  # what train.py writes to flags.json
    assert values['data_dir'] == '/home/someone/data'
    assert values['save_dir'] == '/home/someone/pxpp/save'  # the default, expanded
    assert values['init_checkpoint'] == '/home/someone/ckpt/params_cifar.ckpt'
    assert values['nl_levels'] == [2, 0]
    assert json.loads(json.dumps(values)) == values
