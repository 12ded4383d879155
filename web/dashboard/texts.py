"""Vietnamese copy of the officials' dashboard that Python code chooses (labels, messages)."""

from __future__ import annotations

from broadcasts.bots import LINK_MAX, NAME_MAX, RATE_MAX, RATE_MIN, BotProblem
from db.models import (
    BulletinState,
    DeliveryState,
    InboxStatus,
    OfficialRole,
    Platform,
    Priority,
    ScheduleKind,
    SubscriberRole,
)

BULLETIN_STATES: dict[str, str] = {
    BulletinState.draft: "Bản nháp",
    BulletinState.pending_approval: "Chờ duyệt",
    BulletinState.approved: "Đã duyệt",
    BulletinState.scheduled: "Đã lên lịch",
    BulletinState.sending: "Đang gửi",
    BulletinState.sent: "Đã gửi xong",
    BulletinState.cancelled: "Đã hủy",
    BulletinState.expired: "Hết hạn",
    BulletinState.rejected: "Bị trả lại",
}

DELIVERY_STATES: dict[str, str] = {
    DeliveryState.pending: "Chờ gửi",
    DeliveryState.sending: "Đang gửi",
    DeliveryState.sent: "Đã gửi",
    DeliveryState.failed: "Lỗi",
    DeliveryState.blocked: "Bị chặn",
    DeliveryState.expired: "Hết hạn",
    DeliveryState.unknown: "Không rõ",
    DeliveryState.cancelled: "Đã hủy",
}

PRIORITIES: dict[str, str] = {Priority.routine: "Thường", Priority.urgent: "Khẩn"}

OFFICIAL_ROLES: dict[str, str] = {
    OfficialRole.admin: "Quản trị viên",
    OfficialRole.province_editor: "Biên tập viên tỉnh",
    OfficialRole.commune_editor: "Biên tập viên xã",
    OfficialRole.approver: "Người duyệt",
    OfficialRole.radio_operator: "Cán bộ truyền thanh",
}

SUBSCRIBER_ROLES: dict[str, str] = {
    SubscriberRole.fisherman: "Ngư dân",
    SubscriberRole.villager: "Người dân",
    SubscriberRole.radio_operator: "Cán bộ truyền thanh",
    SubscriberRole.border_guard: "Đồn biên phòng",
    SubscriberRole.commune_official: "Cán bộ xã",
}

PLATFORMS: dict[str, str] = {
    Platform.telegram: "Telegram",
    Platform.zalo: "Zalo",
    Platform.zalo_oa: "Zalo OA",
    Platform.zns: "Zalo ZNS",
    Platform.sms: "SMS",
}
# What a bulletin's audience may be narrowed to: where people subscribe (ZNS only reaches
# a consented phone, as a fallback step); and what the bots page registers (the gateways
# need options: `haidang bots add`).
AUDIENCE_PLATFORMS = {
    p: PLATFORMS[p] for p in (Platform.telegram, Platform.zalo, Platform.zalo_oa, Platform.sms)
}
TOKEN_PLATFORMS = {p: PLATFORMS[p] for p in (Platform.telegram, Platform.zalo)}

SCHEDULE_KINDS: dict[str, str] = {ScheduleKind.once: "Một lần", ScheduleKind.cron: "Định kỳ"}

INBOX_STATUSES: dict[str, str] = {
    InboxStatus.new: "Mới",
    InboxStatus.read: "Đã đọc",
    InboxStatus.answered: "Đã trả lời",
    InboxStatus.archived: "Đã lưu trữ",
}

INBOX_KINDS: dict[str, str] = {
    "text": "Tin nhắn",
    "photo": "Ảnh",
    "location": "Vị trí",
    "other": "Khác",
}

# Audit actions as officials read them in the log.
AUDIT_ACTIONS: dict[str, str] = {
    "official.login": "Đăng nhập",
    "official.login_failed": "Đăng nhập sai",
    # Written before growing sign-in delays replaced the account lock; old entries stay.
    "official.lockout": "Khóa tài khoản tạm thời (sai mật khẩu nhiều lần)",
    "official.logout": "Đăng xuất",
    "official.create": "Tạo tài khoản cán bộ",
    "official.deactivate": "Vô hiệu hóa tài khoản",
    "official.activate": "Kích hoạt lại tài khoản",
    "bulletin.create": "Tạo bản tin",
    "bulletin.edit": "Sửa bản tin",
    "bulletin.submit": "Gửi duyệt",
    "bulletin.approve": "Duyệt bản tin",
    "bulletin.reject": "Trả lại bản tin",
    "bulletin.schedule": "Lên lịch gửi",
    "bulletin.cancel": "Hủy bản tin",
    "inbox.read": "Đánh dấu đã đọc",
    "inbox.reply": "Trả lời tin nhắn",
    "bot.create": "Thêm bot",
    "bot.update": "Sửa cấu hình bot",
    "bot.token": "Thay token bot",
    "topic.update": "Sửa chủ đề",
    "document.import": "Nhập văn bản",
    "area.add_village": "Thêm thôn",
    "area.add_port": "Thêm bến cá",
    "area.rename": "Đổi tên thôn hoặc bến cá",
    "area.coastal_on": "Đánh dấu xã ven biển",
    "area.coastal_off": "Bỏ đánh dấu xã ven biển",
    "vessel.mark": "Đánh dấu tàu đã được báo trực tiếp",
    "vessel.create": "Thêm tàu cá",
    "vessel.update": "Sửa thông tin tàu cá",
    "vessel.import": "Nhập danh sách tàu cá",
    "vessel.link": "Gắn người với tàu cá",
    "vessel.unlink": "Bỏ gắn người với tàu cá",
    "zns_template.add": "Đăng ký mẫu tin ZNS",
    "zns_template.disable": "Tắt mẫu tin ZNS",
}

# Short notices shown after a redirect (?ok=<key>); only these keys are ever displayed.
NOTICES: dict[str, str] = {
    "created": "Đã lưu bản nháp.",
    "edited": "Đã lưu các thay đổi.",
    "submitted": "Đã gửi bản tin đi duyệt.",
    "approved": "Đã duyệt bản tin.",
    "rejected": "Đã trả lại bản tin kèm góp ý.",
    "scheduled": "Đã lên lịch gửi.",
    "cancelled": "Đã hủy bản tin.",
    "replied": "Đã lưu câu trả lời.",
    "reply_queued": (
        "Đã lưu câu trả lời; bot đang bận trả lời nhiều người, tin sẽ được gửi khi đến lượt."
    ),
    "reply_not_sent": "Đã lưu câu trả lời nhưng chưa gửi được qua bot; hệ thống sẽ báo lỗi.",
    "read": "Đã đánh dấu đã đọc.",
    "official_created": "Đã tạo tài khoản.",
    "official_changed": "Đã cập nhật tài khoản.",
    "bot_saved": "Đã lưu cấu hình bot.",
    "bot_added": "Đã thêm bot; dịch vụ đang chạy sẽ khởi động bot trong vài giây.",
    "bot_token_saved": "Đã lưu cấu hình và token mới; bot sẽ khởi động lại trong vài giây.",
    "topic_saved": "Đã lưu chủ đề.",
    "subarea_added": "Đã thêm vào danh sách thôn và bến cá.",
    "subarea_renamed": "Đã đổi tên.",
    "coastal_saved": "Đã lưu đánh dấu ven biển.",
    "logged_out": "Đã đăng xuất.",
    "document_imported": "Đã nhập văn bản vào thư viện.",
    "document_version": "Đã lưu bản mới của văn bản.",
    "document_unchanged": "Nội dung văn bản không đổi; đã lưu các tệp đính kèm (nếu có).",
    "play_requested": "Đã gửi lệnh phát ngay; loa sẽ phát bản tin trong vài giây.",
    "taken_over": "Bạn đã nhận soạn bản nháp nhập từ CAP: hãy kiểm tra, sửa rồi gửi duyệt.",
    "cap_source_added": "Đã thêm nguồn CAP; dịch vụ sẽ đọc nguồn trong khoảng thời gian đã đặt.",
    "cap_source_changed": "Đã cập nhật nguồn CAP.",
    "cap_source_removed": "Đã xóa nguồn CAP (các bản nháp đã nhập vẫn giữ).",
    "vessel_marked": "Đã ghi nhận tàu đã được báo.",
    "zns_template_added": "Đã đăng ký mẫu tin ZNS.",
    "zns_template_disabled": "Đã tắt mẫu tin ZNS.",
}

# The one answer to every refused sign-in (unknown name, wrong password, a delay after
# many failures): it must not tell which names exist.
LOGIN_FAILED = (
    "Không đăng nhập được. Kiểm tra lại tên đăng nhập và mật khẩu; nếu đã nhập sai nhiều"
    " lần, hãy chờ vài phút rồi thử lại."
)
CSRF_FAILED = "Phiên làm việc không hợp lệ hoặc đã hết hạn. Hãy tải lại trang và thử lại."
FORBIDDEN = "Bạn không có quyền thực hiện thao tác này."
FORBIDDEN_SCOPE = "Khu vực này nằm ngoài phạm vi phụ trách của bạn."
ADMIN_ONLY = "Chỉ quản trị viên được vào mục này."
NOT_FOUND = "Không tìm thấy."
BAD_REQUEST = "Không thực hiện được thao tác."
REPLY_EMPTY = "Hãy nhập nội dung trả lời."
REJECT_COMMENT_NEEDED = "Khi trả lại bản tin, hãy ghi góp ý cho người viết."
BAD_DATETIME = "Thời gian không hợp lệ (định dạng ngày giờ)."
BAD_NUMBER = "Giá trị số không hợp lệ."
BAD_CHOICE = "Lựa chọn không hợp lệ."
CANNOT_DEACTIVATE_SELF = "Không thể tự vô hiệu hóa tài khoản của mình."
TOPIC_NAME_EMPTY = "Tên chủ đề không được để trống."
# Bots (admin_bots.html): where a token is kept (the token itself is never shown). Labels,
# not secrets (ruff S105 reads "token" in a name as a password).
BOT_TOKEN_STORED = "Token: đã lưu"  # noqa: S105
BOT_TOKEN_NONE = "Token: chưa có"  # noqa: S105
BOT_TOKEN_FROM_ENV = "Token: lấy từ biến môi trường {variable}"  # noqa: S105
# Why a bot could not be added or changed (broadcasts.bots.BotProblem).
BOT_PROBLEMS: dict[BotProblem, str] = {
    BotProblem.bad_name: (
        f"Tên bot gồm 1–{NAME_MAX} ký tự: chữ thường không dấu, số hoặc dấu gạch ngang "
        "(ví dụ quang-ngai)."
    ),
    BotProblem.name_taken: "Nền tảng này đã có một bot cùng tên; hãy chọn tên khác.",
    BotProblem.bad_token: (
        "Token không đúng dạng. Token do nền tảng cấp có dạng 123456789:AAH… "
        "(dãy số, dấu hai chấm, rồi chuỗi bí mật); hãy sao chép lại đầy đủ."
    ),
    BotProblem.token_taken: (
        "Tài khoản bot của token này đã được đăng ký (ở một bot khác hoặc trong biến môi "
        "trường); mỗi tài khoản bot chỉ đăng ký một lần."
    ),
    BotProblem.first_bot_token: (
        "Token của bot đầu tiên (default) nằm trong biến môi trường TELEGRAM_BOT_TOKEN hoặc "
        "ZALO_BOT_TOKEN của máy chủ, không đặt được ở đây."
    ),
    BotProblem.bad_rate: f"Tốc độ gửi phải từ {RATE_MIN:g} đến {RATE_MAX:g} tin mỗi giây.",
    BotProblem.bad_link: (
        f"Đường dẫn của bot phải bắt đầu bằng https:// và dài tối đa {LINK_MAX} ký tự."
    ),
    BotProblem.not_a_province: "Hãy chọn một tỉnh, thành phố trong danh sách.",
    BotProblem.province_taken: (
        "Tỉnh này đã có một bot khác của cùng nền tảng phục vụ; mỗi tỉnh chỉ một bot."
    ),
    BotProblem.unreadable: (
        "Không mở được token đã lưu (khóa bí mật SECRET_KEY của máy chủ đã đổi); "
        "hãy nhập lại token."
    ),
    BotProblem.not_found: "Không tìm thấy bot.",
}
# Villages and ports (admin_areas.html).
SUBAREA_KINDS: dict[str, str] = {"village": "Thôn, xóm, ấp, bản", "port": "Bến cá, cảng cá"}
SUBAREA_NAME_EMPTY = "Tên thôn hoặc bến cá không được để trống."
SUBAREA_NAME_TOO_LONG = "Tên quá dài (tối đa {limit} ký tự)."
SUBAREA_DUPLICATE = "{commune} đã có «{name}» (mã {code}); hãy chọn tên khác."
NOT_A_COMMUNE = "Hãy chọn một xã, phường hoặc đặc khu."
AREAS_ROLE_ONLY = "Chỉ quản trị viên và biên tập viên tỉnh, xã được quản lý thôn và bến cá."
COASTAL_ROLE_ONLY = "Chỉ quản trị viên và biên tập viên tỉnh được đổi đánh dấu ven biển."
NOT_EDITABLE = "Chỉ sửa được bản nháp hoặc bản tin bị trả lại."
NOT_YOUR_DRAFT = "Chỉ người viết (hoặc quản trị viên) mới sửa được bản tin này."
PHOTO_NOT_IMAGE = "Ảnh phải là tệp JPEG hoặc PNG."
PHOTO_TOO_BIG = "Ảnh quá lớn (tối đa {mb} MB)."
# A photo that decodes but cannot be sent as one: too many pixels (a decompression bomb,
# or a panorama past what we decode) or too long and thin for Telegram.
PHOTO_DIMENSIONS_BAD = (
    "Kích thước ảnh không phù hợp (tối đa {mp} megapixel, "
    "cạnh dài không quá {ratio} lần cạnh ngắn)."
)
TRANSLATION_LANGUAGE_BAD = "Ngôn ngữ bản dịch không hợp lệ."
TRANSLATION_DUPLICATE = "Mỗi ngôn ngữ chỉ có một bản dịch."
TRANSLATION_INCOMPLETE = "Bản dịch cần có cả ngôn ngữ, tiêu đề và nội dung."
FALLBACK_MINUTES_BAD = "Thời gian chờ xác nhận phải là số phút, từ 5 đến 720."
# The steps of an urgent bulletin's fallback chain, in the editor's order.
FALLBACK_STEPS: dict[str, str] = {Platform.zns: "ZNS (Zalo)", Platform.sms: "SMS"}
# How an SMS is encoded (broadcasts.sms.Encoding), on the bulletin page's cost preview.
SMS_ENCODINGS: dict[str, str] = {
    "gsm7_unaccented": "Không dấu (GSM-7, 160 ký tự/tin)",
    "ucs2": "Có dấu (UCS-2, 70 ký tự/tin)",
}

VIETNAMESE = "Tiếng Việt"

# Languages a bulletin can be translated into: those a subscriber can choose in the bots
# (bot/texts.LANGUAGES), Vietnamese aside since it is the original.
TRANSLATION_LANGUAGES: dict[str, str] = {
    "en": "Tiếng Anh (English)",
    "zh": "Tiếng Trung (中文)",
    "km": "Tiếng Khmer (ភាសាខ្មែរ)",
    "lo": "Tiếng Lào (ພາສາລາວ)",
}

# Domain errors carry English messages for logs and the CLI; officials see these instead.
# The first fragment found in the English message decides.
DOMAIN_ERRORS: tuple[tuple[str, str], ...] = (
    ("cannot write bulletins", "Vai trò của bạn không được viết bản tin."),
    ("translation needs a title and a body", "Bản dịch cần có tiêu đề và nội dung."),
    ("translation language must be", "Ngôn ngữ bản dịch không hợp lệ."),
    ("needs a title and a body", "Bản tin cần có tiêu đề và nội dung."),
    ("title ≤", "Tiêu đề hoặc nội dung quá dài."),
    ("choose at least one area", "Hãy chọn ít nhất một khu vực nhận tin."),
    ("expiry is already past", "Thời hạn hiệu lực đã qua."),
    ("unknown area code", "Mã khu vực không tồn tại."),
    ("not an area code", "Mã khu vực không đúng định dạng."),
    ("unknown topic", "Chủ đề không tồn tại."),
    ("only a draft can be submitted", "Chỉ bản nháp hoặc bản bị trả lại mới gửi duyệt được."),
    ("only the author submits", "Chỉ người viết mới gửi duyệt bản nháp."),
    ("only a draft can be edited", "Chỉ sửa được bản nháp hoặc bản tin bị trả lại."),
    ("only the author edits", "Chỉ người viết (hoặc quản trị viên) mới sửa được bản tin này."),
    ("only a submitted bulletin", "Bản tin không ở trạng thái chờ duyệt."),
    ("four-eyes", "Người viết không được tự duyệt bản tin của mình (nguyên tắc hai người)."),
    ("cannot approve", "Vai trò của bạn không được duyệt bản tin."),
    ("only another official who may approve", "Chỉ cán bộ khác có quyền duyệt mới trả lại được."),
    (
        "update of a warning must be",
        "Bản cập nhật của một cảnh báo phải là tin khẩn hoặc thuộc chủ đề thời tiết – thiên tai.",
    ),
    ("is not an approved warning to update", "Chỉ cập nhật được một cảnh báo đã duyệt."),
    ("has ended", "Cảnh báo này đã kết thúc (bị hủy hoặc hết hạn); hãy soạn một bản tin mới."),
    (
        "already has an update",
        "Cảnh báo này đã có bản cập nhật được duyệt; hãy cập nhật bản mới nhất.",
    ),
    ("is already", "Bản tin đã kết thúc, không hủy được nữa."),
    ("cannot cancel", "Vai trò của bạn không được hủy bản tin."),
    ("cannot schedule", "Vai trò của bạn không được lên lịch gửi."),
    ("only an approved bulletin", "Chỉ bản tin đã duyệt mới lên lịch được."),
    ("invalid cron expression", "Biểu thức lặp lại (cron) không hợp lệ."),
    ("does not fire before", "Lịch lặp lại không có lần gửi nào trước thời điểm kết thúc."),
    ("is already past", "Thời điểm gửi đã qua."),
    ("has already expired", "Bản tin đã hết hạn."),
    ("is not before the bulletin expires", "Lần gửi đầu tiên phải trước khi bản tin hết hạn."),
    ("the end (until) must be after now", "Thời điểm kết thúc phải sau hiện tại."),
    ("an end (until) applies only", "Chỉ lịch lặp lại mới có thời điểm kết thúc."),
    ("either a time", "Chọn một thời điểm hoặc một lịch lặp lại, không chọn cả hai."),
    ("username must be", "Tên đăng nhập 3–60 ký tự: chữ thường, số, '.', '_' hoặc '-'."),
    ("password must be at least", "Mật khẩu phải có ít nhất 10 ký tự."),
    ("already exists", "Tên đăng nhập đã có người dùng."),
    ("has no area scope", "Quản trị viên không gắn với khu vực; để trống ô khu vực."),
    ("needs --area", "Vai trò này cần một khu vực (mã tỉnh hoặc mã xã)."),
    ("is scoped to a", "Khu vực không phù hợp với vai trò (tỉnh hoặc xã)."),
    ("the reply is empty", "Hãy nhập nội dung trả lời."),
    ("erased their data", "Người gửi đã xóa dữ liệu của mình; không thể trả lời nữa."),
    ("may not answer messages", "Tin nhắn này nằm ngoài phạm vi phụ trách của bạn."),
    ("only an admin answers", "Chỉ quản trị viên trả lời được tin nhắn không rõ xã."),
    # An urgent bulletin's fallback chain (bulletins.FallbackChain).
    (
        "only an urgent bulletin has a fallback chain",
        "Bản tin thường không có chuỗi gửi dự phòng: chỉ bản tin khẩn mới gửi tiếp qua ZNS, SMS."
        " Hãy bỏ chọn các bước gửi dự phòng hoặc chọn mức độ Khẩn.",
    ),
    ("a fallback step is", "Bước gửi dự phòng chỉ có thể là ZNS hoặc SMS."),
    ("each fallback platform at most once", "Mỗi kênh (ZNS, SMS) chỉ dùng một lần trong chuỗi."),
    (
        "fallback minutes must be",
        "Thời gian chờ xác nhận phải từ 5 đến 720 phút (12 giờ).",
    ),
    ("needs a ZNS template", "Chuỗi có bước ZNS: hãy chọn mẫu tin ZNS."),
    ("no enabled ZNS template", "Mẫu tin ZNS đã chọn không còn dùng được; hãy chọn mẫu khác."),
)


def explain(error: Exception) -> str:
    """The Vietnamese sentence for a domain error (a generic one when none matches)."""
    message = str(error)
    for fragment, vietnamese in DOMAIN_ERRORS:
        if fragment in message:
            return vietnamese
    return BAD_REQUEST


def duration(seconds: float) -> str:
    """ "khoảng 3 phút 20 giây" for an estimate."""
    total = max(round(seconds), 0)
    if total < 60:
        return f"khoảng {max(total, 1)} giây"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"khoảng {minutes} phút {secs} giây" if secs else f"khoảng {minutes} phút"
    hours, minutes = divmod(minutes, 60)
    return f"khoảng {hours} giờ {minutes} phút"


WEEKDAYS = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật")

# --- QR posters for ports and commune halls (printed: short, plain words, large type) --------
POSTER_BRAND = "HẢI ĐĂNG"
POSTER_TAGLINE = "Bản tin chính thức của chính quyền, gửi tới điện thoại của bà con"
POSTER_HEADLINE = "Nhận cảnh báo bão, thông báo và bản tin của"
POSTER_TELEGRAM = "Telegram"
POSTER_TELEGRAM_HINT = "Quét mã rồi bấm «Bắt đầu» (Start): bot tự ghi danh bà con vào xã này."
POSTER_ZALO = "Zalo"
POSTER_ZALO_HINT = "Quét mã bằng Zalo, mở bot rồi nhắn tên xã: «{commune}»."
POSTER_STEPS_TITLE = "Cách đăng ký (miễn phí)"
POSTER_STEPS = (
    "1. Mở camera điện thoại (hoặc Zalo, Telegram) và quét mã ở trên.",
    "2. Làm theo hướng dẫn của bot: chọn vai trò (ngư dân, người dân…) và chủ đề muốn nhận.",
    "3. Tin khẩn có nút «Đã nhận» (Zalo: nhắn «da nhan»): bấm để chính quyền biết bà con đã nhận.",
    "Ngừng nhận tin: nhắn /huy (Zalo: «huy»). Xóa thông tin của mình: nhắn /xoa (Zalo: «xoa»).",
)
POSTER_FOOTER = "Hải Đăng không thu phí và không bao giờ hỏi mật khẩu hay mã OTP của bà con."
POSTER_NO_BOT = (
    "Chưa in được áp phích: bot Telegram chưa chạy lần nào (chưa biết tên bot) và chưa "
    "cấu hình ZALO_BOT_LINK."
)
POSTER_NOT_COMMUNE = "Áp phích chỉ in cho một xã, phường hoặc đặc khu (mã số, không phải mã tỉnh)."


# --- the documents library ---------------------------------------------------------------------

DOCUMENT_UPLOAD_ROLES_ONLY = (
    "Chỉ quản trị viên và biên tập viên tỉnh được nhập văn bản vào thư viện "
    "(thư viện dùng chung cho mọi xã và các điểm tra cứu công cộng)."
)
DOCUMENT_FILE_MISSING = "Hãy chọn tệp văn bản (.txt, .md, .pdf hoặc .docx)."
DOCUMENT_VERSION_NEEDS_NUMBER = "Văn bản này chưa có số hiệu; hãy nhập số hiệu cho bản mới."
DOCUMENT_LANGUAGES: dict[str, str] = {
    "vi": "Tiếng Việt",
    "en": "Tiếng Anh",
    "zh": "Tiếng Trung",
    "km": "Tiếng Khmer",
    "lo": "Tiếng Lào",
}

# Import errors carry English messages "<file>: <problem>" for the CLI and logs; officials
# see these instead, with the file named. The first fragment found in the message decides.
DOCUMENT_ERRORS: tuple[tuple[str, str], ...] = (
    ("unsupported file type", "chỉ nhận tệp .txt, .md, .pdf hoặc .docx."),
    (
        "this kind of file cannot be attached",
        "loại tệp này không đính kèm được (nhận PDF, Word, Excel, ảnh, văn bản, MP3, ZIP).",
    ),
    ("file is larger than", "tệp quá lớn."),
    ("file is empty", "tệp rỗng."),
    ("broken UTF-16 text", "tệp văn bản bị hỏng (UTF-16)."),
    ("looks like a binary file", "đây không phải tệp văn bản."),
    (
        "not UTF-8 text",
        "tệp không ở bảng mã UTF-8 (có thể là TCVN3 hoặc VNI); hãy lưu lại "
        "dưới dạng UTF-8 rồi thử lại.",
    ),
    ("password-protected", "tệp PDF có mật khẩu; hãy gỡ mật khẩu rồi thử lại."),
    ("not a readable PDF", "không đọc được tệp PDF (tệp hỏng hoặc không phải PDF)."),
    (
        "has no text layer",
        "tệp PDF chỉ có ảnh quét, không có chữ; cần nhận dạng chữ (OCR) trước khi nhập.",
    ),
    ("not a readable DOCX", "không đọc được tệp Word (tệp hỏng hoặc không phải .docx)."),
    ("no text found", "không tìm thấy chữ nào trong tệp."),
    ("no text after the front matter", "không có nội dung sau phần thông tin đầu tệp."),
    ("front matter", "phần thông tin đầu tệp (giữa hai dòng ---) bị sai."),
    ("no title found", "không tìm thấy tiêu đề; hãy nhập tiêu đề."),
    ("the title is empty", "tiêu đề trống."),
    ("not a language code", "mã ngôn ngữ không hợp lệ (ví dụ vi, en, zh, km)."),
    ("title is longer than", "tiêu đề quá dài (tối đa 400 ký tự)."),
    ("number is longer than", "số hiệu quá dài (tối đa 80 ký tự)."),
    ("issuer is longer than", "tên cơ quan ban hành quá dài (tối đa 200 ký tự)."),
    ("source is longer than", "đường dẫn nguồn quá dài (tối đa 500 ký tự)."),
    ("source link must start", "đường dẫn nguồn phải bắt đầu bằng http:// hoặc https://."),
    ("not a date", "ngày ban hành không hợp lệ."),
    ("two attached files have this name", "có hai tệp cùng tên; hãy đổi tên một tệp."),
    ("attachments per document", "quá nhiều tệp đính kèm (tối đa 20)."),
    ("unknown topic", "chủ đề không tồn tại."),
    ("not a usable file name", "tên tệp không dùng được."),
    ("cannot read the file", "không đọc được tệp."),
    ("cannot store the file", "không lưu được tệp vào kho lưu trữ; hãy báo quản trị viên."),
)


def explain_document(error: Exception) -> str:
    """The Vietnamese sentence for a document import error, naming the file."""
    message = str(error)
    name, colon, _rest = message.partition(": ")
    for fragment, vietnamese in DOCUMENT_ERRORS:
        if fragment in message:
            return (
                f"Tệp «{name}»: {vietnamese}"
                if colon and name
                else vietnamese[:1].upper() + vietnamese[1:]
            )
    return BAD_REQUEST


# --- loudspeaker pages (station_views) ----------------------------------------------------------

LOUDSPEAKER_ROLE_ONLY = "Vai trò của bạn không dùng trang loa truyền thanh."
# What a stream plays (db.models.StationOnAir).
ON_AIR: dict[str, str] = {
    "urgent": "Bản tin khẩn / phát ngay",
    "programme": "Chương trình phát thanh trong ngày",
    "filler": "Nhạc chờ giữa các chương trình",
}
# A "play now" request (db.models.StationRequestState) and why one was not played.
STATION_REQUEST_STATES: dict[str, str] = {
    "pending": "Đang chờ phát",
    "played": "Đã phát",
    "dropped": "Không phát",
}
STATION_DROP_REASONS: dict[str, str] = {
    "expired": "quá 10 phút mà trạm chưa phát được",
    "withdrawn": "bản tin đã bị hủy hoặc hết hạn",
    "station_off": "trạm loa đã tắt",
}
# broadcasts.stations.PlayProblem
PLAY_PROBLEMS: dict[str, str] = {
    "station_off": "Trạm loa của xã này chưa bật.",
    "not_published": "Chỉ phát được bản tin đã duyệt và còn hiệu lực.",
    "not_public": "Bản tin này chỉ dành cho cán bộ hoặc biên phòng, không phát trên loa.",
    "no_audio": "Bản tin chưa có tệp âm thanh MP3; hãy chờ vài phút rồi thử lại.",
}
PLAY_CHOOSE = "Hãy chọn một bản tin để phát."

# CAP sources (administration) and drafts imported from them.
CAP_SOURCE_PROBLEMS: tuple[tuple[str, str], ...] = (
    ("http(s) URL", "Địa chỉ nguồn phải là URL http:// hoặc https://."),
    ("already exists", "Đã có nguồn CAP cùng tên."),
    ("poll interval", "Chu kỳ đọc phải từ 10 đến 86.400 giây."),
    ("needs a name", "Hãy đặt tên cho nguồn (tối đa 120 ký tự)."),
    ("default area", "Khu vực mặc định phải là một tỉnh hoặc một xã."),
)
CAP_SOURCE_BAD = "Không thêm được nguồn CAP."
CAP_TAKE_OVER_REFUSED = (
    "Không nhận soạn được bản nháp này (không phải bản nhập từ CAP, hoặc ngoài phạm vi)."
)


# ZNS templates (admin_zns.html), by broadcasts.zns.ZnsProblem.
ZNS_PROBLEMS: dict[str, str] = {
    "not_zns_bot": "Hãy chọn một bot ZNS.",
    "bad_template_id": "Mã mẫu gồm 1–40 chữ cái hoặc chữ số, đúng như Zalo cấp.",
    "bad_name": "Hãy đặt tên cho mẫu (tối đa 120 ký tự).",
    "no_params": "Hãy khai báo ít nhất một tham số của mẫu.",
    "bad_param": (
        "Tên tham số gồm chữ không dấu, chữ số hoặc dấu gạch dưới (như trong mẫu ở Zalo);"
        " tối đa 14 tham số."
    ),
    "unknown_source": "Nội dung điền vào tham số không hợp lệ.",
    "bad_limit": "Giới hạn ký tự của tham số phải từ 1 đến 200.",
    "bad_price": "Giá mỗi tin phải từ 0 đến 100.000 đồng.",
    "duplicate": "Mẫu này đã được đăng ký cho bot này.",
    "not_found": "Không tìm thấy mẫu ZNS.",
}
ZNS_PARAM_TWICE = "Tham số «{name}» được khai báo hai lần."


def explain_cap_source(error: Exception) -> str:
    """The Vietnamese message for a refused CAP source."""
    message = str(error)
    return next((vi for en, vi in CAP_SOURCE_PROBLEMS if en in message), CAP_SOURCE_BAD)


# Vessels of a bulletin (the border guards' list).
VESSEL_STATUSES: dict[str, str] = {
    "acknowledged": "Đã bấm «Đã nhận»",
    "reached": "Đã nhận tin",
    "informed": "Đã báo trực tiếp",
    "not_reached": "Chưa liên lạc được",
}
MARK_METHODS: dict[str, str] = {
    "radio": "Vô tuyến điện",
    "phone": "Điện thoại",
    "in_person": "Trực tiếp",
    "other": "Cách khác",
}
VESSEL_MARK_ROLE_ONLY = (
    "Chỉ quản trị viên, biên tập viên và người duyệt trong phạm vi của tàu được đánh dấu đã báo."
)
VESSEL_MARK_BAD = (
    "Không đánh dấu được tàu này cho bản tin (bản tin chưa duyệt hoặc tàu không thuộc vùng nhận)."
)
