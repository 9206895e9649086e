"""Compresses images losslessly with a PixelCNN++ checkpoint into one .pxpp file, and back.

    python3 compress.py -o runs/patches --compress photos/ --output photos.pxpp
    python3 compress.py -o runs/patches --decompress photos.pxpp --output restored/  # PNGs
    python3 compress.py --checkpoint ~/pxpp/save --decompress photos.pxpp --output back.npz

The file takes about the model's NLL of the images in bits (sample.py --score
reports it as bits/dim; the file is within about 1% of it) plus a header of 95 bytes
(and a byte per image for a class-conditional model's labels, --labels, one per
image); pixel_cnn_pp/compression.py and coding.py say how. It decompresses only with
the model that wrote it (the digest of its weights is in the file), in float32, on any
machine (other CPUs, thread counts, oneDNN, XLA, GPUs: pixel_cnn_pp/coding.py says
within what); anything else, a machine whose floats are further off than the file
allows, or a damaged or truncated file, is refused and nothing is written.
--decompress writes one PNG per image, named as the files compressed, into a new (or
empty) folder, or an .npz (`images`, and `labels`) if --output ends in .npz. Nothing
is written over: an --output that exists (a file, or a folder holding anything) is
refused before any work; delete it or choose another. Outputs land whole or not at
all (the PNGs are written into a hidden folder beside --output and renamed when
complete); SIGTERM or Ctrl-C ends the run with one line, removing what was begun.
The checkpoint flags are sample.py's (--checkpoint, -o/--save_dir, --pretrained,
--nouse_ema); --batch_size images are coded together (stored in the file).
"""

import os
import time

from absl import app
from absl import flags as absl_flags

import cli
import flags as all_flags
from pixel_cnn_pp.data.loader import DataError

PXPP = '.pxpp'


def _png_names(names, count):
    """The file names of the decompressed images: as compressed (as .png), else numbered."""
    if names:
        stems = [os.path.splitext(os.path.basename(n.replace('.npz[', '_').rstrip(']')))[0]
                 for n in names]
        if len(set(stems)) == count and all(stems):
            return [s + '.png' for s in stems]
    return ['image_%05d.png' % i for i in range(count)]


def _write_bytes(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def compress_images(args, model):
    from pixel_cnn_pp import bits_per_dim, compression, files, image_input
    from pixel_cnn_pp.progress import Progress

    images, names = image_input.read_images(args.compress, model.image_shape, '--compress')
    labels = image_input.read_labels(args.labels, len(images), model.num_classes)
    start, display = time.perf_counter(), Progress('compressing', unit='rows')
    data, nats = compression.compress(model, images, labels,
                                      [os.path.basename(n) for n in names],
                                      batch=args.batch_size, progress=display, return_nll=True)
    display.close()
    seconds = time.perf_counter() - start
    files.atomic_write(args.output, lambda tmp: _write_bytes(tmp, data), replace=False)
    nll = bits_per_dim(nats.sum() / len(images), model.image_shape)
    print('compressed %d images into %s: %d bytes, %.4f bits/dim (the model\'s NLL: %.4f '
          'bits/dim), %.1f s' % (len(images), args.output, len(data),
                                 8 * len(data) / images.size, nll, seconds))


def decompress_file(args, model):
    from pixel_cnn_pp import compression, files, images as image_files
    from pixel_cnn_pp.progress import Progress

    with open(args.decompress, 'rb') as f:
        data = f.read()
    try:
        header = compression.read_header(data)
        start, display = time.perf_counter(), Progress('decompressing', unit='rows')
        decoded = compression.decompress(model, data, progress=display)
        display.close()
    except ValueError as e:
        raise ValueError('%s: %s' % (args.decompress, e)) from None
    seconds = time.perf_counter() - start
    labels = header.labels
    if args.output.endswith('.npz'):
        arrays = dict(images=decoded) if labels is None else dict(images=decoded, labels=labels)
        files.atomic_write(args.output, image_files.npz_writer(**arrays), replace=False)
    else:
        names = _png_names(header.names, len(decoded))
        # Written into a hidden folder beside --output, renamed to it when every file is there.
        with files.new_folder(args.output, '--output') as folder:
            for name, image in zip(names, decoded):
                image_files.save_png(os.path.join(folder, name), image)
            if labels is not None:
                rows = ''.join('%s,%d\n' % row for row in zip(names, labels))
                files.atomic_write(os.path.join(folder, 'labels.csv'), lambda tmp: _write_bytes(
                    tmp, ('file,label\n' + rows).encode()))
    print('decompressed %d images from %s into %s (%.1f s)'
          % (len(decoded), args.decompress, args.output, seconds))


def run(args):
    """Check every path, lock --output, load the checkpoint, then --compress or --decompress."""
    from pixel_cnn_pp import files

    if bool(args.compress) == bool(args.decompress):
        raise ValueError('give --compress IMAGES (with --output FILE.pxpp) or --decompress '
                         'FILE.pxpp')
    if 'output' not in args.present:
        if args.compress:
            raise ValueError('--compress: give --output, the .pxpp file to write')
        if not args.decompress.endswith(PXPP):
            raise ValueError('--decompress %s: give --output (a folder, or an .npz)'
                             % args.decompress)
        args.output = args.decompress[:-len(PXPP)]
    if args.decompress and not os.path.isfile(args.decompress):
        raise FileNotFoundError('--decompress: no such file: %s' % args.decompress)
    if args.pretrained and args.checkpoint:
        raise ValueError('give --pretrained or --checkpoint, not both')
    with files.output_lock(args.output, '--output'):  # one compress.py at a time writes there
        # Before any work: nothing that exists is written over (a new file, or a new or
        # empty folder for --decompress's PNGs).
        files.check_new_output(args.output, '--output',
                               folder=bool(args.decompress) and not args.output.endswith('.npz'))
        model, prefix = cli.load_model(args)
        print('loaded %s (%s%s)' % (prefix, model.describe(),
                                    ', Polyak averages' if args.use_ema else ', raw weights'))
        (compress_images if args.compress else decompress_file)(args, model)


# sample.py's flags that compress.py does not read (it reads the checkpoint's, --labels,
# --output, --batch_size and the model options).
SAMPLING_FLAGS = ('complete', 'known_rows', 'score', 'eval', 'eval_images', 'method',
                  'num_samples', 'seed', 'jit_compile', 'nr_gpu', 'data_dir', 'download')


def _own_flags():
    """The flags compress.py reads: sample.py's checkpoint and model flags, and its own."""
    return [n for n in all_flags.sample_flags() if n not in SAMPLING_FLAGS] + \
        list(all_flags.COMPRESS_FLAGS)


for _name in _own_flags():
    absl_flags.declare_key_flag(_name)  # listed by --help and --helpshort

# How compress.py reads the flags it shares with sample.py otherwise: its help.
COMPRESS_PY_HELP = {
    'batch_size': ('--compress: how many images are coded together (speed only; stored in '
                   'the file, which --decompress takes it from).', None),
    'precision': ('compress.py codes in float32 only (the decoder must compute the '
                  'encoder\'s mixtures on any machine); any other is refused.', None),
}


def arguments_from_flags():
    """sample.py's arguments (the checkpoint, --labels, --output, ...) and compress.py's own."""
    cli.refuse_flags_of('sample.py', SAMPLING_FLAGS, 'compress.py')
    args = cli.read_checkpoint_flags('compress.py',
                                     all_flags.sample_flags() + all_flags.COMPRESS_FLAGS)
    if args.precision != 'float32':
        # The decoder must compute exactly the encoder's floats, on any machine.
        raise ValueError('--precision %s: compress.py codes in float32 only (the decoder must '
                         'compute exactly the floats the encoder did, on any machine)'
                         % args.precision)
    stored = [name for name in ('labels', 'batch_size') if name in args.present]
    if args.decompress and stored:
        raise ValueError('%s is stored in the .pxpp file: --decompress takes it from there; '
                         'leave it out' % cli.spelled(stored[0]))
    return args


# OSError: a file that cannot be written (a full disk names it), an output that appeared
# meanwhile (FileExistsError).
main = cli.main_for('compress.py', arguments_from_flags, run,
                    errors=(ValueError, OSError, DataError), stop_on_signals=True,
                    flag_names=all_flags.sample_flags() + all_flags.COMPRESS_FLAGS)

if __name__ == '__main__':
    cli.use_help(COMPRESS_PY_HELP)  # before parsing, so that --help shows it
    app.run(main)
