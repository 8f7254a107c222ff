"""`firedetd export-micro --c-only`: the model as a C array that a C compiler takes, with the spec's constants."""

import os
import shutil
import subprocess
import sys

import pytest

from firedetd.micro import load_micro_spec
from firedetd.micro.carray import read_c_array, write_c_array

MAIN_C = r"""
#include <stdint.h>
#include <stdio.h>
#include "firedetd_micro_model.h"

int main(void) {
  printf("%u %d %d %d %d %d %s\n", firedetd_micro_model_len, (int)((uintptr_t)firedetd_micro_model % 16),
         FIREDETD_MICRO_INPUT_WIDTH, FIREDETD_MICRO_INPUT_HEIGHT, FIREDETD_MICRO_INPUT_ZERO_POINT,
         FIREDETD_MICRO_ARENA_BYTES, firedetd_micro_labels[FIREDETD_MICRO_NUM_LABELS - 1]);
  return 0;
}
"""


def _copy_model(micro_spec, tmp_path):
    for name in ("firedetd-micro.json", micro_spec.raw["files"]["tflite"]["path"]):
        shutil.copy(os.path.join(micro_spec.directory, name), str(tmp_path / name))
    return load_micro_spec(str(tmp_path / "firedetd-micro.json"))


def test_the_c_array_holds_the_tflite_bytes_exactly(micro_spec, tmp_path):
    header, source = write_c_array(micro_spec, str(tmp_path))
    assert read_c_array(source) == micro_spec.model_bytes()
    with open(header) as f:
        text = f.read()
    assert "#define FIREDETD_MICRO_INPUT_ZERO_POINT %d" % micro_spec.input["zero_point"] in text
    assert "#define FIREDETD_MICRO_ARENA_BYTES" in text


def test_a_c_compiler_builds_it_and_the_program_sees_the_spec(micro_spec, tmp_path):
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc) on this machine")
    header, source = write_c_array(micro_spec, str(tmp_path))
    (tmp_path / "main.c").write_text(MAIN_C)
    binary = str(tmp_path / "probe")
    subprocess.run([compiler, "-std=c11", "-x", "c", source, "-x", "c", str(tmp_path / "main.c"), "-o", binary],
                   check=True, cwd=str(tmp_path), timeout=120)
    fields = subprocess.run([binary], check=True, stdout=subprocess.PIPE, timeout=10).stdout.decode().split()
    assert int(fields[0]) == len(micro_spec.model_bytes())
    assert fields[1] == "0"                                   # 16-byte aligned, as TFLM wants
    assert [int(v) for v in fields[2:5]] == [micro_spec.size[0], micro_spec.size[1], micro_spec.input["zero_point"]]
    assert micro_spec.arena_bytes <= int(fields[5]) < micro_spec.arena_bytes + 1024
    assert fields[6] == micro_spec.labels[-1]


def test_export_micro_c_only_writes_both_files_beside_the_model(micro_spec, tmp_path):
    _copy_model(micro_spec, tmp_path)
    subprocess.run([sys.executable, "-m", "firedetd", "export-micro", "--c-only", "--out", str(tmp_path)],
                   check=True, timeout=120)
    assert read_c_array(str(tmp_path / "firedetd_micro_model.cc")) == micro_spec.model_bytes()
    assert (tmp_path / "firedetd_micro_model.h").is_file()


def test_a_stale_spec_is_refused(micro_spec, tmp_path):
    spec = _copy_model(micro_spec, tmp_path)
    with open(spec.model_path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="sha256"):
        write_c_array(spec, str(tmp_path))
