"""launch/clip_depth.launch.py passes the DepthCLIP arguments on: model_type,
the prompt and bin lists (as the YAML-list strings the node parses),
depth_scale as a float, and with model_type:=depthclip and no model_config
the installed config/depthclip_nyu.yaml. launch / launch_ros are stood in
for where they are not installed: what is tested is the file's own logic."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pytest

from conftest import REPO_ROOT

LAUNCH_FILE = REPO_ROOT / 'launch' / 'clip_depth.launch.py'


class _Config:
    def __init__(self, values, name):
        self.values, self.name = values, name

    def perform(self, context):
        return self.values.get(self.name, '')


def _load(monkeypatch, values, share):
    """The launch module with stand-ins that record the Node it builds; `share`
    stands for the installed package (its config/model_types.yaml copied in)."""
    built = {}
    (Path(share) / 'config').mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / 'config' / 'model_types.yaml', Path(share) / 'config' / 'model_types.yaml')

    def node(**kwargs):
        built.update(kwargs)
        return kwargs

    stubs = {
        'launch': types.SimpleNamespace(LaunchDescription=list),
        'launch.actions': types.SimpleNamespace(DeclareLaunchArgument=lambda *a, **k: None,
                                                OpaqueFunction=lambda **k: None),
        'launch.substitutions': types.SimpleNamespace(LaunchConfiguration=lambda n: _Config(values, n),
                                                      PathJoinSubstitution=lambda parts: parts),
        'launch_ros.actions': types.SimpleNamespace(Node=node),
        'launch_ros.substitutions': types.SimpleNamespace(FindPackageShare=lambda p: p),
        'launch_ros': types.SimpleNamespace(),
        'ament_index_python.packages': types.SimpleNamespace(get_package_share_directory=lambda p: str(share)),
        'ament_index_python': types.SimpleNamespace(),
    }
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location('clip_depth_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._launch_node(context=None)
    return built


def _defaults(params_file):
    return {'image_topic': '/camera/image_raw', 'camera_info_topic': '/camera/camera_info',
            'params_file': str(params_file), 'namespace': '', 'respawn': 'false', 'log_level': 'info'}


def test_depthclip_arguments_reach_the_node(monkeypatch, tmp_path):
    pytest.importorskip('yaml')
    params_file = tmp_path / 'params.yaml'
    params_file.write_text('/**:\n  ros__parameters:\n    device: "cpu"\n')
    values = _defaults(params_file)
    values.update({'model_type': 'depthclip', 'checkpoint': '/w/RN50.pt', 'depth_classes': '[near, far]',
                   'bin_list': '[0.5, 4.0]', 'depth_scale': '2'})
    node = _load(monkeypatch, values, tmp_path / 'share')
    overrides = node['parameters'][1]
    assert overrides['model_type'] == 'depthclip'
    assert overrides['depth_classes'] == '[near, far]' and overrides['bin_list'] == '[0.5, 4.0]'
    assert overrides['depth_scale'] == 2.0
    assert overrides['model_config'] == str(tmp_path / 'share' / 'config' / 'depthclip_nyu.yaml')


def test_a_model_config_in_the_params_file_is_kept(monkeypatch, tmp_path):
    pytest.importorskip('yaml')
    params_file = tmp_path / 'params.yaml'
    params_file.write_text('/**:\n  ros__parameters:\n    model_config: "/mine/depthclip.yaml"\n')
    values = _defaults(params_file)
    values.update({'model_type': 'depthclip'})
    overrides = _load(monkeypatch, values, tmp_path)['parameters'][1]
    assert 'model_config' not in overrides


def test_bad_depth_scale_is_named(monkeypatch, tmp_path):
    pytest.importorskip('yaml')
    values = _defaults(tmp_path / 'none.yaml')
    values.update({'depth_scale': 'twice'})
    with pytest.raises(ValueError, match='depth_scale'):
        _load(monkeypatch, values, tmp_path)


def test_depthblip2_gets_its_installed_config_and_temperature(monkeypatch, tmp_path):
    pytest.importorskip('yaml')
    values = _defaults(tmp_path / 'none.yaml')
    values.update({'model_type': 'depthblip2', 'checkpoint': '/w/model.safetensors', 'temperature': '0.05'})
    overrides = _load(monkeypatch, values, tmp_path / 'share')['parameters'][1]
    assert overrides['model_config'] == str(tmp_path / 'share' / 'config' / 'depthblip2_nyu.yaml')
    assert overrides['temperature'] == 0.05


def test_every_spelling_the_node_accepts_finds_its_installed_config(monkeypatch, tmp_path):
    """The launch file reads the family table the node's registry writes
    (config/model_types.yaml), so it accepts what the node accepts."""
    pytest.importorskip('yaml')
    for spelling, config in [('depth_clip', 'depthclip_nyu.yaml'), ('DepthBLIP-2', 'depthblip2_nyu.yaml'),
                             ('depth_blip_2', 'depthblip2_nyu.yaml')]:
        values = _defaults(tmp_path / 'none.yaml')
        values.update({'model_type': spelling, 'checkpoint': '/w/model.safetensors'})
        overrides = _load(monkeypatch, values, tmp_path / 'share')['parameters'][1]
        assert overrides['model_config'] == str(tmp_path / 'share' / 'config' / config), spelling
    values = _defaults(tmp_path / 'none.yaml')
    values.update({'model_type': 'space_clip'})
    assert 'model_config' not in _load(monkeypatch, values, tmp_path / 'share')['parameters'][1]
    values.update({'model_type': 'midas'})
    with pytest.raises(ValueError, match='midas'):
        _load(monkeypatch, values, tmp_path / 'share')
