"""cli.py: TensorFlow's start-up lines as the scripts show them, and a library import that
changes nothing in the process."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What TensorFlow writes while it starts on a machine without a GPU (a CPU-only start),
# before its logging reads TF_CPP_MIN_LOG_LEVEL, and a line that is not TensorFlow's.
START = [
    'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
    'I0000 00:00:1796432836.204315    9852 port.cc:153] oneDNN custom operations are on.',
    'I0000 00:00:1796432836.262008    9852 cpu_feature_guard.cc:227] This TensorFlow binary '
    'is optimized to use available CPU instructions in performance-critical operations.',
    'To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow '
    'with the appropriate compiler flags.',
    'W0000 00:00:1796432839.131894    9852 some_op.cc:31] a warning of its own',
    'E0000 00:00:1796432839.356662    9852 cuda_platform.cc:52] failed call to cuInit: '
    'INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)',
    'E0000 00:00:1796432839.356662    9852 some_op.cc:52] an error of its own',
    'a line that is not TensorFlow\'s',
]


def test_startup_lines_kept_follow_tf_cpp_min_log_level():
    import cli

    # Unset: the scripts' level 2, and the notices of a CPU-only start left out too.
    assert cli.startup_lines_kept(START, None) == [START[6], START[7]]
    assert cli.startup_lines_kept(START, '2') == START[5:]
    # 3 hides even the errors, as TensorFlow does once its logging has read the variable.
    assert cli.startup_lines_kept(START, '3') == [START[7]]
    assert cli.startup_lines_kept(START, '0') == START
    assert cli.startup_lines_kept(START, '1') == [START[0]] + START[4:]


def _python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(environment, **env))


def test_a_user_level_of_3_hides_every_start_up_line_of_a_script():
    result = _python('import os, cli; cli.import_tensorflow_quietly(); '
                     'print(os.environ["TF_CPP_MIN_LOG_LEVEL"])', TF_CPP_MIN_LOG_LEVEL='3')
    assert result.returncode == 0, result.stderr
    assert result.stdout == '3\n'  # the user's level, kept
    assert result.stderr == '', result.stderr


def test_importing_the_library_sets_no_variable_and_captures_nothing():
    """No TF_CPP_MIN_LOG_LEVEL, no TensorFlow until a name that needs it is used, and
    TensorFlow's lines left to it: only the scripts quiet it."""
    code = ('import os, sys; before = dict(os.environ); import pixel_cnn_pp; '
            'assert "tensorflow" not in sys.modules and dict(os.environ) == before; '
            'pixel_cnn_pp.PixelCNN; assert "tensorflow" in sys.modules; '
            'assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ; '
            'from pixel_cnn_pp import distribute; print(distribute.STARTUP)')
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{'gpu_notes': [], 'lines_shown': True}\n"


def test_the_librarys_arguments_are_said_as_the_programs_flags():
    sys.path.insert(0, ROOT)
    import cli
    import flags

    message = ("'resume': the checkpoint c was trained with another model configuration "
               "('nr_filters': 8 in the checkpoint, 16 now; 'image_shape': (8, 8, 3) in the "
               "checkpoint, (4, 4, 3) now) in 'save_dir'; 'unknown' stays quoted")
    said = cli.in_flag_words(message, flags.TRAIN_FLAGS, {
        'image_shape': '--data_set/--image_size (image shape)', 'resume': 'load_params'})
    assert said == ("-r/--load_params: the checkpoint c was trained with another model "
                    "configuration (-n/--nr_filters: 8 in the checkpoint, 16 now; --data_set/"
                    "--image_size (image shape): (8, 8, 3) in the checkpoint, (4, 4, 3) now) in "
                    "-o/--save_dir; 'unknown' stays quoted")
    # A program without the flag (sample.py has no -r) leaves the argument as the library said.
    assert cli.in_flag_words("'resume' and 'seed'", ('seed',)) == "'resume' and -s/--seed"
