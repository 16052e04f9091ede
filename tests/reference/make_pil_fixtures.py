"""Pillow's own output for the frames the preprocessing must match exactly:
portrait frames, sides already equal to the model's input (one pass or no
resize at all), upscaling, odd sizes, and input sizes other than 224.

Writes tests/fixtures/pil/: each source frame as PNG, Pillow's
`Image.resize((S, S), BICUBIC)` of it as PNG (what the SPACE-CLIP reference
feeds the model before normalising), and cases.json listing them. The Rust
tests (tests/pil_parity.rs) compare the CPU and the device preprocessing
with these pixels. Needs only Pillow and numpy (tests/reference/requirements.txt);
deterministic: re-running rewrites identical files.

    .venv-ref/bin/python tests/reference/make_pil_fixtures.py
"""

import argparse
import json
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

HERE = Path(__file__).resolve().parent
SCENE = HERE.parent / 'fixtures' / 'images' / 'scene_640x480.png'


def sources(scene: Image.Image) -> dict:
    """Name -> RGB frame, all cut from the fixture scene."""
    portrait = scene.transpose(Image.Transpose.ROTATE_90)          # 480x640
    return {
        'portrait_360x480': portrait.crop((60, 80, 420, 560)),
        'portrait_224x500': portrait.crop((128, 70, 352, 570)),   # width = S: vertical pass only
        'landscape_300x224': scene.crop((170, 128, 470, 352)),    # height = S: horizontal pass only
        'square_224': scene.crop((208, 128, 432, 352)),           # no resize at all
        'portrait_96x160': portrait.resize((96, 160), Image.Resampling.BOX),  # upscaled
        'portrait_333x517': portrait.crop((71, 9, 404, 526)),     # odd sizes
    }


# (source, S): S = 224 for ViT-B/16; 160 and 336 for other input sizes.
CASES = [
    ('portrait_360x480', 224), ('portrait_360x480', 160),
    ('portrait_224x500', 224), ('landscape_300x224', 224), ('square_224', 224),
    ('portrait_96x160', 224), ('portrait_333x517', 224), ('portrait_333x517', 336),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=HERE.parent / 'fixtures' / 'pil')
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frames = sources(Image.open(SCENE).convert('RGB'))
    for name, frame in frames.items():
        frame.save(args.out / f'{name}.png', optimize=False)
    cases = []
    for name, size in CASES:
        frame = frames[name]
        # Exactly what the reference does (space_clip_ref.preprocess): no
        # resize when the frame already has the input size.
        if frame.size == (size, size):
            out, pillow = frame, f'{name}.png'
        else:
            out, pillow = frame.resize((size, size), Image.BICUBIC), f'{name}_to_{size}.png'
            out.save(args.out / pillow, optimize=False)
        assert out.size == (size, size) and out.mode == 'RGB'
        # Reloads identically (PNG is lossless): the test reads these bytes.
        assert np.array_equal(np.asarray(Image.open(args.out / pillow)), np.asarray(out))
        cases.append({'source': f'{name}.png', 'width': frame.size[0], 'height': frame.size[1],
                      'size': size, 'pillow': pillow})
    manifest = {'pillow': PIL.__version__, 'resample': 'BICUBIC', 'cases': cases}
    (args.out / 'cases.json').write_text(json.dumps(manifest, indent=1) + '\n')
    print(f'wrote {len(frames)} frames and {len(cases)} Pillow outputs to {args.out}')


if __name__ == '__main__':
    main()
