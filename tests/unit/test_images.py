from runner import images


def test_digest_changes_with_any_input(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "PROJECT_ROOT", tmp_path)
    first, second = tmp_path / "Containerfile", tmp_path / "extra.py"
    first.write_text("FROM base\n")
    second.write_text("print(1)\n")
    original = images.inputs_digest("base-id", [first, second])
    assert images.inputs_digest("base-id", [second, first]) == original  # order does not matter
    assert images.inputs_digest("other-base", [first, second]) != original
    second.write_text("print(2)\n")
    assert images.inputs_digest("base-id", [first, second]) != original


def test_runner_image_inputs_include_the_source():
    from runner.settings import Settings

    runner = next(r for r in images.recipes(Settings()) if r.name == "runner")
    assert images.PROJECT_ROOT / "runner" / "engine.py" in runner.inputs
    assert images.PROJECT_ROOT / "images" / "runner" / "Containerfile" in runner.inputs
