"""Bad input is a message, never a 500: control characters in every text the platform stores (wizchat.textcheck),
BYOI secrets with CR/LF, and PDFs that break or bomb the parser."""

import json
import logging
import uuid
import zlib

import pytest

from byoi.models import BYOIComponent, ConnectionTest
from chatbots import ingestion
from chatbots.ingestion import DocumentRejected, document_add
from chatbots.models import ApiKey, Chatbot, Document
from tests.test_ingestion import make_pdf
from wizchat.models import Account
from wizchat.textcheck import control_characters, text_problem

HX = {"HTTP_HX_REQUEST": "true"}
SECRET = "sk-canary-input-0123456789"


def body(response) -> str:
    return response.content.decode()


# -- the check itself ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85", "\x08", "\ud800"])
def test_the_check_refuses_control_characters_and_lone_surrogates_naming_the_field(char):
    assert " in the title: remove it" in text_problem(f"a{char}b", "the title")
    assert " in the text: remove it" in text_problem(f"a{char}b", "the text", multiline=True)


def test_the_check_keeps_line_breaks_and_tabs_in_multi_line_text_only():
    assert control_characters("one\r\ntwo\tthree", multiline=True) == []
    assert text_problem("one\ntwo", "the name").startswith("Keep the name on one line")


# -- chatbot, team, key names, origins -------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,label", [
    ("name", "Help\x00desk", "There is a NUL character in the name"),
    ("name", "Help\x1b[31mdesk", "There is a control character (U+001B) in the name"),
    ("instructions", "Be brief.\x00", "There is a NUL character in the instructions"),
])
def test_the_chatbot_form_refuses_control_characters_with_a_message(owner_client, field, value, label):
    data = {"name": "Helpdesk", "instructions": "Be kind.", field: value}
    response = owner_client.post("/dashboard/chatbots/new/", data)
    assert response.status_code == 200
    assert label in body(response)
    assert "Null characters are not allowed" not in body(response)  # Django's own message, naming no field
    assert not Chatbot.objects.exists()


def test_the_chatbot_form_keeps_line_breaks_and_tabs_in_instructions(owner_client):
    response = owner_client.post("/dashboard/chatbots/new/", {"name": "Helpdesk",
                                                               "instructions": "Line one\r\n\tLine two"})
    assert response.status_code == 302
    assert Chatbot.objects.get().instructions == "Line one\r\n\tLine two"


def test_the_chatbot_edit_form_refuses_a_nul(owner_client, chatbot):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/edit/", {"name": "Bad\x00", "instructions": ""})
    assert response.status_code == 200
    assert "There is a NUL character in the name" in body(response)
    chatbot.refresh_from_db()
    assert chatbot.name == "Support bot"


@pytest.mark.parametrize("field,value,label", [
    ("team_name", "Acme\x00", "There is a NUL character in the team name"),
    ("team_name", "Acme\x07", "There is a control character (U+0007) in the team name"),
    ("email", '"a\x01b"@example.com', "There is a control character (U+0001) in the e-mail address"),
])
def test_the_sign_up_form_refuses_control_characters(client, db, field, value, label):
    data = {"email": "new@example.com", "team_name": "Newco", "password": "a long enough passphrase", field: value}
    response = client.post("/signup/", data)
    assert response.status_code == 200
    assert label in body(response)
    assert not Account.objects.exists()


@pytest.mark.parametrize("name", ["key\x00name", "key\x1bname"])
def test_an_api_key_name_with_control_characters_is_refused(owner_client, chatbot, name):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/api-keys/", {"name": name}, **HX)
    assert response.status_code == 200
    assert "in the key&#x27;s name: remove it" in body(response)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("text", ["https://a.example.com\x00", "https://a.example.com\n\x00https://b.example.com",
                                  "https://\x1bexample.com"])
def test_allowed_origins_with_control_characters_are_refused(owner_client, chatbot, text):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/allowed-origins/", {"allowed_origins": text}, **HX)
    assert response.status_code == 200
    assert "control characters" in body(response)
    chatbot.refresh_from_db()
    assert chatbot.allowed_origins == []


# -- documents -------------------------------------------------------------------------------------------------

def post_document(client, chatbot, htmx=True, **data):
    return client.post(f"/dashboard/chatbots/{chatbot.id}/documents/", data, **(HX if htmx else {}))


@pytest.mark.parametrize("htmx", [True, False])
def test_a_nul_in_a_pasted_documents_title_is_a_message(owner_client, chatbot, htmx):
    response = post_document(owner_client, chatbot, htmx, mode="paste", title="Guide\x00", text="Some text.")
    assert response.status_code == (200 if htmx else 302)
    page = body(response) if htmx else body(owner_client.get(response["Location"]))
    assert "There is a NUL character in the title" in page
    assert not Document.objects.exists()


def test_a_nul_in_an_uploads_title_is_a_message(owner_client, chatbot, tmp_path):
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"Plain notes.")
    with upload.open("rb") as handle:
        response = post_document(owner_client, chatbot, title="Notes\x00", file=handle)
    assert response.status_code == 200
    assert "There is a NUL character in the title" in body(response)
    assert not Document.objects.exists()


@pytest.mark.parametrize("char,what", [("\x00", "a NUL character"), ("\x1b", "a control character (U+001B)")])
def test_pasted_text_with_control_characters_is_refused_with_a_message(owner_client, chatbot, char, what):
    response = post_document(owner_client, chatbot, mode="paste", title="Guide", text=f"Before{char}after.")
    assert f"There is {what} in the pasted text" in body(response)
    assert not Document.objects.exists()


def test_pasted_text_keeps_its_line_breaks_and_tabs(chatbot):
    document, outcome = document_add(chatbot, title="Guide", text="One\r\n\tTwo\n\nThree", queue=False)
    assert outcome == "added"


def test_an_uploads_file_name_loses_its_control_characters(chatbot):
    document, _ = document_add(chatbot, filename="no\x1btes\x00.txt", data=b"Plain notes.", queue=False)
    assert document.filename == "notes.txt"
    assert document.title == "notes"


def test_control_characters_deep_inside_an_uploaded_file_are_removed(chatbot):
    data = b"A" * 5000 + b"\x00\x1b[2J" + b" tail text."
    document, _ = document_add(chatbot, filename="big.txt", data=data, queue=False)
    assert "\x00" not in document.source.text and "\x1b" not in document.source.text


# -- PDFs ------------------------------------------------------------------------------------------------------

def pdf_bomb(inflated_mb: int = 80) -> bytes:
    """A small PDF (about 80 KB) whose page content inflates past pypdf's 75 MB decompression limit."""
    squeeze = zlib.compressobj(9)
    stream = b"".join(squeeze.compress(b" " * (1 << 20)) for _ in range(inflated_mb)) + squeeze.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def upload(client, chatbot, tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with path.open("rb") as handle:
        return post_document(client, chatbot, file=handle)


def test_a_pdf_that_inflates_past_the_parsers_limit_is_a_message_not_a_500(owner_client, chatbot, tmp_path):
    bomb = pdf_bomb()
    assert len(bomb) < 100_000
    response = upload(owner_client, chatbot, tmp_path, "bomb.pdf", bomb)
    assert response.status_code == 200
    assert "“bomb.pdf” expands to more data than WizChat reads from one PDF" in body(response)
    assert not Document.objects.exists()


@pytest.mark.parametrize("damage", [
    lambda pdf: pdf[: len(pdf) // 2],  # truncated
    lambda pdf: pdf.replace(b"/Kids [3 0 R]", b"/Kids [2 0 R]"),  # a page tree that contains itself
    lambda pdf: pdf.replace(b"trailer", b"trailor"),  # no trailer
    lambda pdf: pdf.replace(b"/Contents 4 0 R", b"/Contents 99 0 R"),  # dangling reference
    lambda pdf: b"%PDF-1.4\n" + bytes(range(256)) * 40,  # noise after the header
    lambda pdf: pdf.replace(b"(", b"<< /Filter /FlateDecode >>("),  # nonsense inside the content stream
])
def test_a_damaged_pdf_is_a_per_document_message(owner_client, chatbot, tmp_path, damage):
    response = upload(owner_client, chatbot, tmp_path, "broken.pdf", damage(make_pdf("Hello BYOI")))
    assert response.status_code == 200
    assert "“broken.pdf”" in body(response)
    assert not Document.objects.exists()


def test_a_flate_stream_that_is_not_zlib_is_a_message(chatbot):
    pdf = pdf_bomb(1).replace(b"/FlateDecode >>\nstream\nx", b"/FlateDecode >>\nstream\n\x00")
    with pytest.raises(DocumentRejected, match="“bad.pdf”"):
        document_add(chatbot, filename="bad.pdf", data=pdf, queue=False)


def test_any_other_parser_failure_is_a_message_and_logs_its_type(chatbot, monkeypatch, caplog):
    class ParserBug(Exception):
        pass

    def broken(*args, **kwargs):
        raise ParserBug("secret-looking detail")

    monkeypatch.setattr("pypdf.PdfReader", broken)
    with caplog.at_level(logging.WARNING, logger="chatbots.ingestion"):
        with pytest.raises(DocumentRejected, match="could not be read as a PDF"):
            ingestion.document_parse("odd.pdf", make_pdf("Hello"))
    assert "ParserBug" in caplog.text
    assert "secret-looking detail" not in caplog.text


# -- BYOI secrets ----------------------------------------------------------------------------------------------

def llm_post(api_key):
    return {"byoi-enabled": "on", "llm-enabled": "on", "llm-endpoint": "https://llm.example.com/v1",
            "llm-api_key": api_key, "llm-model": "gpt-4o"}


@pytest.mark.parametrize("api_key", [f"{SECRET}\r\nX-Injected: 1", f"{SECRET}\n", f"\t{SECRET}", f"{SECRET}\x00"])
def test_a_byoi_api_key_with_cr_lf_or_control_characters_is_refused_in_the_form(owner_client, chatbot, api_key):
    response = owner_client.post(f"/byoi/chatbots/{chatbot.id}/", llm_post(api_key))
    assert response.status_code == 200
    assert "Keep API Key on one line" in body(response) or "There is a NUL character in API Key" in body(response)
    assert SECRET not in body(response)
    assert not BYOIComponent.objects.exists()


def test_a_byoi_password_with_a_line_break_is_refused_by_test_connection(owner_client, chatbot):
    data = {"vector_store-host": "db.example.com", "vector_store-port": "5432", "vector_store-database": "v",
            "vector_store-username": "u", "vector_store-ssl_mode": "require", "vector_store-password": "pw\r\nx"}
    response = owner_client.post(f"/byoi/chatbots/{chatbot.id}/test/vector_store/", data, **HX)
    assert response.status_code == 286  # htmx: the result, nothing to poll
    assert "Keep Password on one line" in body(response)
    assert not ConnectionTest.objects.exists()


def test_a_byoi_host_with_control_characters_is_refused_by_the_registry(owner_client, chatbot):
    data = {"byoi-enabled": "on", "graph-enabled": "on", "graph-host": "falkor\x1b.example.com", "graph-port": "6379",
            "graph-password": "pw"}
    response = owner_client.post(f"/byoi/chatbots/{chatbot.id}/", data)
    assert response.status_code == 200
    assert "must not contain control characters" in body(response)


# -- the public API ---------------------------------------------------------------------------------------------

@pytest.fixture
def api(chatbot, openai_server):
    from byoi.services import byoi_set_enabled, component_save
    from chatbots.apikeys import apikey_create

    component_save(chatbot, "llm", values=openai_server.llm_settings(), secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(chatbot, True)
    _, key = apikey_create(chatbot, "Tests")

    def ask(client, content):
        payload = {"model": chatbot.slug, "conversation_id": str(uuid.uuid4()),
                   "messages": [{"role": "user", "content": content}]}
        return client.post("/v1/chat/completions", json.dumps(payload), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {key}")

    return ask


def test_a_nul_in_a_stored_api_message_is_a_400_not_a_message_that_can_never_be_stored(client, api, openai_server):
    from conversations.models import Outbox

    response = api(client, "Which plan?\x00")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content"
    assert not openai_server.calls("/chat/completions")
    assert not Outbox.objects.exists()


def test_a_lone_surrogate_in_an_api_message_is_a_400_and_does_not_count_against_the_llm(client, api):
    response = api(client, "Which plan?\ud800")
    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]["message"]
    assert api(client, "Which plan?").status_code == 200  # the chatbot's LLM was never marked as failing
