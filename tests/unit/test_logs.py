import pytest

from runner import logs


def test_registered_secret_is_masked_everywhere():
    logs.register_secret("Zq8-very-secret-value")
    assert (logs.mask("token is Zq8-very-secret-value, again Zq8-very-secret-value")
            == "token is ********, again ********")


def test_assignments_and_url_credentials_are_masked_without_registration():
    text = "PGPASSWORD=abc123 url=https://admin:pa55word@minio:9000/ key: ok access_key=AKIAXYZ"
    masked = logs.mask(text)
    assert "abc123" not in masked and "pa55word" not in masked and "AKIAXYZ" not in masked
    assert "https://admin:********@minio:9000/" in masked


def test_format_command_masks():
    logs.register_secret("hunter2hunter2")
    assert logs.format_command(["sh", "-c", "echo hunter2hunter2"]) == "sh -c 'echo ********'"


def test_log_records_are_masked(capsys):
    logs.setup("INFO")
    logs.register_secret("caught-in-a-log-line")
    from loguru import logger

    logger.info("the value is {}", "caught-in-a-log-line")
    assert "caught-in-a-log-line" not in capsys.readouterr().err


@pytest.mark.parametrize("url, masked", [
    ("https://user:p@ss@host/x", "https://user:********@host/x"),
    ("s3://key:a@b:c@minio:9000/bucket?tag=x@y", "s3://key:********@minio:9000/bucket?tag=x@y"),
    ("https://admin:pa55word@minio:9000", "https://admin:********@minio:9000"),
])
def test_a_url_password_holding_at_signs_is_masked_whole(url, masked):
    assert logs.mask(f"fetching {url} now") == f"fetching {masked} now"


def test_urls_without_a_password_are_left_alone():
    text = "https://user@host:8080/path and https://host/x@y and http://h:80/a?b=c@d"
    assert logs.mask(text) == text
