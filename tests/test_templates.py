"""Template hygiene: Django's {# … #} comment ends at the end of its line; one that spans lines is printed on
the page as text."""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def test_it_has_no_comment_spanning_lines_in_any_template():
    broken = [f"{path.relative_to(TEMPLATES)}:{number}"
              for path in sorted(TEMPLATES.rglob("*.html"))
              for number, line in enumerate(path.read_text().splitlines(), 1)
              if line.count("{#") > line.count("#}")]
    assert broken == []


def test_it_prints_no_template_comment_on_the_create_page(owner_client):
    page = owner_client.get("/dashboard/chatbots/new/").content.decode()
    assert "Create New Chatbot" in page
    assert "{#" not in page and "#}" not in page
