"""Interface copy of the public library pages, per interface language (Vietnamese first)."""

from __future__ import annotations

from typing import Final

DEFAULT_LANGUAGE: Final = "vi"

# The interface languages, in the order the switch shows them, each named in itself.
LANGUAGE_NAMES: Final[dict[str, str]] = {"vi": "Tiếng Việt", "en": "English"}

UI: Final[dict[str, dict[str, str]]] = {
    "vi": {
        "library": "Thư viện văn bản",
        "tagline": "Văn bản pháp luật và thông tin đối ngoại cho bà con vùng biển, biên giới.",
        "search_label": "Tìm văn bản",
        "search_placeholder": "Từ khóa hoặc số hiệu, ví dụ: luat thuy san, 1191",
        "search_button": "Tìm",
        "topics": "Chủ đề",
        "newest": "Văn bản mới",
        "documents_count": "{count} văn bản",
        "results_for": "Kết quả cho «{query}»",
        "no_results": "Không tìm thấy văn bản nào. Hãy thử từ khóa khác hoặc số hiệu văn bản.",
        "no_documents": "Chưa có văn bản nào.",
        "all_topics": "Mọi chủ đề",
        "number": "Số hiệu",
        "issuer": "Cơ quan ban hành",
        "issued_on": "Ngày ban hành",
        "language": "Ngôn ngữ",
        "summary": "Tóm tắt",
        "full_text": "Toàn văn",
        "attachments": "Tệp đính kèm",
        "original": "bản gốc",
        "download": "Tải về",
        "source": "Nguồn",
        "back": "Về thư viện",
        "previous": "Trang trước",
        "next": "Trang sau",
        "page": "Trang {page}/{pages}",
        "not_found": "Không tìm thấy văn bản này.",
        "topic_not_found": "Không có chủ đề này.",
        "query_too_long": "Từ khóa quá dài; hãy rút gọn.",
        "footer": "Chỉ đọc. Văn bản do cơ quan nhà nước ban hành; bản gốc có trong tệp đính kèm.",
        "switch_language": "Ngôn ngữ giao diện",
        "newer_version": "Văn bản này đã có bản mới hơn:",
    },
    "en": {
        "library": "Document library",
        "tagline": "Laws and official information for coastal, island and border communities.",
        "search_label": "Search documents",
        "search_placeholder": "Words or a number, e.g. fisheries law, 1191",
        "search_button": "Search",
        "topics": "Topics",
        "newest": "Latest documents",
        "documents_count": "{count} documents",
        "results_for": "Results for “{query}”",
        "no_results": "No document found. Try other words or a document number.",
        "no_documents": "No documents yet.",
        "all_topics": "All topics",
        "number": "Number",
        "issuer": "Issued by",
        "issued_on": "Date of issue",
        "language": "Language",
        "summary": "Summary",
        "full_text": "Full text",
        "attachments": "Attachments",
        "original": "original",
        "download": "Download",
        "source": "Source",
        "back": "Back to the library",
        "previous": "Previous page",
        "next": "Next page",
        "page": "Page {page} of {pages}",
        "not_found": "This document was not found.",
        "topic_not_found": "There is no such topic.",
        "query_too_long": "The search is too long; please shorten it.",
        "footer": "Read only. Documents issued by state bodies; the original is attached.",
        "switch_language": "Interface language",
        "newer_version": "A newer version of this document exists:",
    },
}

# Topic names are stored in Vietnamese (officials edit them); the seeded ones in English.
TOPIC_NAMES: Final[dict[str, dict[str, str]]] = {
    "en": {
        "phap-luat": "Law dissemination",
        "bien-dao": "Sea and island sovereignty",
        "doi-ngoai": "External information",
        "thoi-tiet": "Weather and disasters",
        "iuu": "Fighting IUU fishing",
        "dia-phuong": "Local notices",
    },
}


def interface_language(value: str | None) -> str:
    """The interface language asked for (`?lang=`), or Vietnamese."""
    value = (value or "").strip().lower()
    return value if value in UI else DEFAULT_LANGUAGE


def topic_name(slug: str, name: str, language: str) -> str:
    """A topic's name in the interface language, else as officials wrote it."""
    return TOPIC_NAMES.get(language, {}).get(slug, name)


def file_size(size: int, language: str) -> str:
    """ "1,2 MB" / "1.2 MB": a file size for a download link."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            shown = f"{size / scale:.1f}"
            return (shown.replace(".", ",") if language == "vi" else shown) + f" {unit}"
    return f"{size} B"
