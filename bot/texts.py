"""Everything the bots say, in Vietnamese, in one place for officials to review."""

from __future__ import annotations

from db.models import SubscriberRole

WELCOME = (
    "Chào bà con! Đây là kênh thông tin chính thống Hải Đăng của chính quyền địa phương: "
    "tin bão, cảnh báo thiên tai, phổ biến pháp luật, chủ quyền biển đảo và thông báo của xã."
)
CONSENT = (
    "Để gửi đúng tin cho bà con, Hải Đăng lưu: tên hiển thị và mã trò chuyện của bà con, "
    "xã/phường bà con theo dõi, vai trò và các chủ đề bà con chọn. Thông tin chỉ dùng để gửi "
    "bản tin và nhận phản ánh của bà con, không chia sẻ cho ai khác. Bà con có thể ngừng "
    "nhận tin (/huy) hoặc xóa toàn bộ thông tin (/xoa) bất cứ lúc nào.\n\nBà con đồng ý chứ?"
)
CONSENT_YES = "✅ Đồng ý"
CONSENT_NO = "Không đồng ý"
CONSENT_DECLINED = (
    "Bà con chưa đồng ý nên Hải Đăng không lưu thông tin gì. Khi cần, bà con nhắn /start "
    "để bắt đầu lại."
)
ASK_PROVINCE = "Bà con ở tỉnh/thành phố nào? Chọn bên dưới hoặc gõ tên (ví dụ: Hải Phòng)."
ASK_COMMUNE = (
    "Bà con theo dõi xã/phường/đặc khu nào của {province}? Chọn bên dưới hoặc gõ một phần "
    "tên (ví dụ: cat hai)."
)
PICK_FROM_MATCHES = "Bà con chọn đúng nơi của mình:"
NOTHING_FOUND = "Không tìm thấy «{text}». Bà con thử gõ lại tên khác, không cần dấu cũng được."
ASK_ROLE = "Bà con là:"
ASK_TOPICS = (
    "Bà con muốn nhận tin về những chủ đề nào? Bấm để bật/tắt, xong thì bấm «Xong». "
    "Mặc định nhận tất cả."
)
TOPICS_DONE = "✔️ Xong"
NEED_ONE_TOPIC = "Bà con cần chọn ít nhất một chủ đề."
PREVIOUS = "◀ Trước"
NEXT = "Sau ▶"
OTHER_PROVINCE = "◀ Chọn tỉnh khác"
BAD_DEEP_LINK = "Mã «{code}» trên áp phích không đúng hoặc đã thay đổi. Bà con chọn lại nhé."
PICK_BY_NUMBER = "Bà con trả lời bằng số (ví dụ: 1)."

SUMMARY = (
    "🎉 Đăng ký xong!\n"
    "• Nơi theo dõi: {areas}\n"
    "• Vai trò: {role}\n"
    "• Chủ đề: {topics}\n\n"
    "Bà con sẽ nhận bản tin bằng chữ và tiếng nói. Tin khẩn có nút «Đã nhận», bà con bấm "
    "để chính quyền biết đã nhận được. Nhắn /caidat để thay đổi, /trogiup để xem hướng dẫn."
)
DEEP_LINK_DONE = (
    "🎉 Bà con đã đăng ký nhận tin của {commune} ({province}) với tất cả các chủ đề.\n\n"
    "Hải Đăng lưu tên hiển thị, mã trò chuyện, xã theo dõi và chủ đề của bà con chỉ để gửi "
    "bản tin; nhắn /huy để ngừng, /xoa để xóa thông tin bất cứ lúc nào."
)
ADJUST = "⚙️ Điều chỉnh"
ADD_COMMUNE = "➕ Thêm xã khác"
ALL_GOOD = "👍 Vậy là được"
WELCOME_BACK = "Chào bà con! Bà con đang theo dõi: {areas}. Nhắn /caidat để thay đổi."

SETTINGS_MENU = "⚙️ Cài đặt. Bà con muốn thay đổi gì?"
SETTINGS_COMMUNES = "📍 Xã/phường theo dõi"
SETTINGS_ROLE = "👤 Vai trò"
SETTINGS_TOPICS = "🗂 Chủ đề"
SETTINGS_LANGUAGE = "🌐 Ngôn ngữ"
SETTINGS_CLOSE = "Đóng"
COMMUNES_MENU = "Bà con đang theo dõi: {areas}. Bấm vào một nơi để bỏ theo dõi, hoặc thêm nơi mới."
NO_COMMUNES = "Bà con chưa theo dõi xã/phường nào."
REMOVED_COMMUNE = "Đã bỏ theo dõi {area}."
ALREADY_FOLLOWING = "Bà con đã theo dõi {area} rồi."
ADDED_COMMUNE = "Đã thêm {area}."
SAVED = "✅ Đã lưu."
ASK_LANGUAGE = (
    "Bà con muốn đọc bản tin bằng ngôn ngữ nào? (Khi có bản dịch; nếu không có sẽ gửi tiếng Việt.)"
)
LANGUAGES = {
    "vi": "Tiếng Việt",
    "en": "English",
    "zh": "中文",
    "km": "ភាសាខ្មែរ",
    "lo": "ພາສາລາວ",
}

CONFIRM_STOP = "Bà con muốn NGỪNG nhận mọi bản tin? Thông tin vẫn được giữ để bà con nhận lại sau."
STOPPED = "Đã ngừng gửi tin. Khi muốn nhận lại, bà con nhắn /batdau."
CONFIRM_ERASE = (
    "Bà con muốn XÓA toàn bộ thông tin của mình (tên, mã trò chuyện, xã theo dõi, chủ đề)? "
    "Việc này không hoàn tác được."
)
ERASED = (
    "Đã xóa toàn bộ thông tin của bà con. Hải Đăng chỉ còn giữ số liệu thống kê không gắn "
    "với ai. Cảm ơn bà con; khi cần, nhắn /start để đăng ký lại."
)
YES = "Có"
NO = "Không"
CANCELLED = "Đã hủy thao tác, mọi thứ giữ nguyên."
RESUMED = "Chào mừng bà con trở lại! Bà con sẽ tiếp tục nhận tin của: {areas}."
NOT_SUBSCRIBED = "Bà con chưa đăng ký nhận tin. Nhắn /start để bắt đầu."

LATEST_HEADER = "📰 Tin mới nhất cho {areas}:"
LATEST_ITEM = "{marker} {title} ({date})"
NO_BULLETINS = "Chưa có bản tin nào cho nơi bà con theo dõi."

HELP = (
    "Hải Đăng gửi bản tin chính thống của chính quyền tới bà con.\n\n"
    "/start – đăng ký nhận tin\n"
    "/tin – xem tin mới nhất\n"
    "/caidat – đổi xã theo dõi, vai trò, chủ đề, ngôn ngữ\n"
    "/huy – ngừng nhận tin\n"
    "/batdau – nhận tin trở lại\n"
    "/xoa – xóa thông tin của bà con\n"
    "/sdt – cho số điện thoại để nhận tin khẩn qua SMS/Zalo (/sdt xoa để bỏ số)\n"
    "/tracuu – tra cứu văn bản pháp luật (ví dụ: /tracuu luật thủy sản, /tracuu 1191)\n"
    "/trogiup – xem hướng dẫn này\n"
    "(Nhắn chữ cũng được: «dang ky», «tin», «cai dat», «huy», «bat dau», «xoa», «sdt», "
    "«xoa so», «tro giup», «tra cuu …»; tin khẩn thì nhắn «da nhan» để xác nhận.)\n\n"
    "Muốn phản ánh, báo tin (tàu lạ, tai nạn, phao hỏng…) bà con cứ nhắn chữ, gửi ảnh hoặc "
    "vị trí: tin nhắn sẽ được chuyển tới cán bộ xã."
)
INBOX_FORWARDED = "📨 Đã chuyển ý kiến của bạn tới cán bộ {area}. Cảm ơn bà con!"
INBOX_FORWARDED_URGENT = (
    "🚨 Đã chuyển tin KHẨN của bạn tới cán bộ {area}. Trường hợp nguy hiểm đến tính mạng, "
    "bà con gọi ngay 112 (tìm kiếm cứu nạn) hoặc Bộ đội Biên phòng gần nhất."
)
INBOX_NO_AREA = (
    "📨 Đã ghi nhận tin nhắn của bạn. Để tin được chuyển đúng cán bộ xã, bà con nhắn /start "
    "để chọn xã của mình."
)
PHOTO_FORWARDED = "📷 Đã chuyển ảnh của bạn tới cán bộ {area}. Cảm ơn bà con!"
LOCATION_FORWARDED = "📍 Đã chuyển vị trí của bạn tới cán bộ {area}. Cảm ơn bà con!"
INBOX_REPLY = "📩 Cán bộ {area} trả lời bà con:\n{text}"
STICKER_REPLY = "😊 Cảm ơn bà con! Muốn hỏi hay phản ánh gì, bà con nhắn chữ giúp nhé. /trogiup"
VOICE_REPLY = (
    "🎙 Hải Đăng chưa nghe được tin nhắn thoại. Bà con nhắn chữ, gửi ảnh hoặc vị trí giúp nhé."
)
UNSUPPORTED_REPLY = "Hải Đăng chưa đọc được loại tin này. Bà con nhắn chữ giúp nhé. /trogiup"
GROUP_REPLY = (
    "Hải Đăng chỉ làm việc trong trò chuyện riêng để giữ kín thông tin của bà con. "
    "Bà con nhắn riêng cho bot{handle} và gõ /start nhé."
)
TOO_FAST = "Bà con nhắn nhanh quá, Hải Đăng xin phép trả lời chậm lại một chút."
TOO_LONG_NOTE = "(Tin nhắn dài nên chỉ giữ {limit} ký tự đầu.)"
APOLOGY = "Xin lỗi bà con, Hải Đăng đang gặp trục trặc. Bà con thử lại sau ít phút nhé."

# --- the phone for urgent bulletins by SMS or Zalo message (/sdt) -------------------------------

PHONE_ASK = (
    "📱 Khi có tin khẩn (bão, thiên tai) mà tin nhắn trên ứng dụng này không tới được bà con "
    "(mất mạng, đang ngoài khơi), Hải Đăng sẽ gửi cảnh báo qua SMS hoặc tin nhắn Zalo tới số "
    "điện thoại của bà con. Bà con không mất tiền: Nhà nước chi trả. Bà con có thể bỏ số bất "
    "cứ lúc nào (nhắn /sdt xoa).\n\nBà con nhắn số điện thoại di động của mình (ví dụ: "
    "0912345678)."
)
PHONE_INVALID = (
    "Số này không phải số di động Việt Nam. Bà con nhắn lại 10 số bắt đầu bằng 03, 05, 07, 08 "
    "hoặc 09 (ví dụ: 0912345678), hoặc nhắn «không» để thôi."
)
PHONE_CONSENT = (
    "Bà con đồng ý để Hải Đăng lưu số {phone} và chỉ dùng số này để gửi tin khẩn qua SMS hoặc "
    "tin nhắn Zalo, không chia sẻ cho ai khác?"
)
PHONE_YES = "✅ Đồng ý"
PHONE_NO = "Không"
PHONE_SAVED = (
    "✅ Đã lưu số {phone} để gửi tin khẩn. Muốn bỏ số, bà con nhắn /sdt xoa; /xoa xóa toàn "
    "bộ thông tin."
)
PHONE_DECLINED = "Hải Đăng không lưu số của bà con. Khi cần, bà con nhắn /sdt."
PHONE_KEPT = (
    "📱 Hải Đăng đang lưu số {phone} của bà con để gửi tin khẩn qua SMS/Zalo. Muốn bỏ số, "
    "bà con nhắn /sdt xoa; muốn đổi số, nhắn /sdt kèm số mới (ví dụ: /sdt 0912345678)."
)
PHONE_REMOVED = "Đã xóa số điện thoại của bà con. Hải Đăng sẽ không gửi tin qua SMS/Zalo nữa."
PHONE_NONE = "Hải Đăng không lưu số điện thoại nào của bà con. Nhắn /sdt nếu muốn cho số."
PHONE_NEED_SIGNUP = "Bà con đăng ký nhận tin trước (nhắn /start), rồi nhắn /sdt để cho số nhé."
# Typed answers to the consent question (folded); Zalo has no buttons, "1"/"2" work too.
PHONE_YES_WORDS = frozenset(("dong y", "co", "ok", "yes", "u", "uh", "vang", "da"))
PHONE_NO_WORDS = frozenset(("khong", "khong dong y", "ko", "k", "no", "thoi"))
# Typed words (folded) that remove the phone: "/sdt xoa" as words.
PHONE_REMOVE_WORDS = frozenset(
    ("xoa so", "xoa sdt", "sdt xoa", "xoa so dien thoai", "so dien thoai xoa", "bo so")
)

ACK_BUTTON = "✅ Đã nhận"
ACK_THANKS = "Cảm ơn bà con đã xác nhận đã nhận tin!"
ACK_ALREADY = "Bà con đã xác nhận tin này rồi. Cảm ơn bà con!"
ACK_UNKNOWN = "Không tìm thấy bản tin này nữa."
ACK_NOTHING = "Hiện không có tin khẩn nào cần xác nhận."
LISTEN_AT = "🔊 Nghe {title}: {url}"
AUDIO_ON_LOUDSPEAKER_PAGE = (
    "🔊 Bản tin này có bản đọc trên trang loa truyền thanh của xã; bà con hỏi cán bộ xã "
    "địa chỉ trang."
)
ACK_HINT = "👉 Bà con nhắn «đã nhận» để báo chính quyền đã nhận được tin này."

URGENT_MARK = "🚨"
ROUTINE_MARK = "📢"

ROLE_NAMES: dict[SubscriberRole, str] = {
    SubscriberRole.fisherman: "Ngư dân",
    SubscriberRole.villager: "Người dân",
    SubscriberRole.radio_operator: "Cán bộ truyền thanh",
    SubscriberRole.border_guard: "Đồn biên phòng",
    SubscriberRole.commune_official: "Cán bộ xã",
}

# Bot menu (Telegram setMyCommands): command → description.
COMMANDS: dict[str, str] = {
    "start": "Đăng ký nhận tin",
    "tin": "Tin mới nhất",
    "caidat": "Cài đặt xã, vai trò, chủ đề",
    "huy": "Ngừng nhận tin",
    "batdau": "Nhận tin trở lại",
    "xoa": "Xóa thông tin của tôi",
    "tracuu": "Tra cứu văn bản pháp luật",
    "sdt": "Số điện thoại nhận tin khẩn",
    "trogiup": "Hướng dẫn",
}

# Typed words that act as commands (folded: no case, no diacritics). Zalo has no command
# menu, and many people type words rather than slash commands on either platform.
KEYWORDS: dict[str, str] = {
    "start": "start",
    "dang ky": "start",
    "cai dat": "caidat",
    "huy": "huy",
    "huy dang ky": "huy",
    "ngung": "huy",
    "bat dau": "batdau",
    "tiep tuc": "batdau",
    "xoa": "xoa",
    "xoa du lieu": "xoa",
    "sdt": "sdt",
    "so dien thoai": "sdt",
    "so dt": "sdt",
    "tin": "tin",
    "tin moi": "tin",
    "tro giup": "trogiup",
    "giup": "trogiup",
    "huong dan": "trogiup",
    "help": "trogiup",
    "menu": "trogiup",
    "da nhan": "ack",
}

# Typed words that start a library search, the rest of the message being what to look for
# ("tra cứu bão số 3"): Zalo has neither commands nor buttons.
SEARCH_WORDS = ("tra cuu", "tracuu", "tim van ban")
# Typed words that turn the page while reading a document (folded).
READ_NEXT_WORDS = frozenset(("tiep", "tiep theo", "trang sau", "sau", "next"))
READ_PREVIOUS_WORDS = frozenset(("truoc", "trang truoc", "lui", "quay lai"))

# --- the documents library ---------------------------------------------------------------------

SEARCH_RESULTS = "🔎 Văn bản tìm được cho «{query}»:"
SEARCH_ITEM = "📄 {title}{number}\n{snippet}"
SEARCH_ITEM_NUMBER = " (số {number})"
SEARCH_NOTHING = (
    "Không tìm thấy văn bản nào cho «{query}». Bà con thử từ khóa khác (không cần dấu), "
    "số văn bản (ví dụ: 1191) hoặc xem theo chủ đề."
)
SEARCH_ASK_HINT = (
    "Nếu bà con muốn hỏi cán bộ xã chứ không phải tra cứu, bấm «Gửi câu hỏi cho cán bộ xã»."
)
ASK_OFFICIALS = "📨 Gửi câu hỏi cho cán bộ xã"
READ = "📖 Đọc {ref}"
LISTEN = "🔊 Nghe {ref}"
LISTEN_THIS = "🔊 Nghe bản đọc"
BROWSE_TOPICS = "🗂 Xem theo chủ đề"
OTHER_TOPICS = "◀ Chủ đề khác"
TOPICS_HEADER = (
    "📚 Thư viện văn bản. Bà con chọn một chủ đề, hoặc nhắn /tracuu kèm từ khóa "
    "(ví dụ: /tracuu luật thủy sản, /tracuu 1191)."
)
TOPIC_ITEM = "{name} ({count})"
TOPIC_DOCUMENTS = "🗂 {topic} – trang {page}/{pages}:"
TOPIC_DOCUMENT_ITEM = "📄 {title}{number}{date}"
TOPIC_DOCUMENT_DATE = ", {date:%d/%m/%Y}"
LIBRARY_EMPTY = "Thư viện chưa có văn bản nào. Bà con quay lại sau nhé."
DOCUMENT_GONE = "Văn bản này không còn trong thư viện."
READ_PAGE = "📖 Trang {page}/{pages}"
READ_TURN_HINT = "(Nhắn «tiếp» hoặc «trước» để lật trang.)"
LISTEN_PREPARING = "🎧 Đang chuẩn bị bản nghe «{title}»… bà con chờ một chút nhé."
LISTEN_CAPTION = "🔊 {title}"
LISTEN_FAILED = "Xin lỗi bà con, chưa làm được bản nghe của văn bản này. Bà con đọc bản chữ nhé."
LISTEN_OFF = "Hải Đăng chưa có bản nghe cho văn bản. Bà con đọc bản chữ nhé."
LISTEN_NO_LINK = (
    "🔊 Bản nghe chưa gửi được qua Zalo vì hệ thống chưa có địa chỉ công khai. Bà con đọc "
    "bản chữ, hoặc nghe qua Telegram hay loa truyền thanh của xã."
)

# --- SMS (feature phones) ----------------------------------------------------------------------
# Unaccented GSM-7, each within one SMS of 160 characters where a placeholder allows: every
# reply costs the service money. The commands are words texted to the brandname.

# The first words of a subscription, folded: "DK Binh Chau", "dk c22024".
SMS_WORDS_SUBSCRIBE = ("dk", "dang ky")
SMS_HELP = (
    "Hai Dang: nhan DK <ten xa> de nhan tin (vd: DK Binh Chau), TIN xem tin moi, DA NHAN "
    "xac nhan tin khan, HUY ngung, XOA xoa so."
)
SMS_SUBSCRIBED = (
    "Da dang ky nhan tin cua {commune} ({province}). Nhan DK la dong y nhan tin qua so nay."
    " HUY: ngung, XOA: xoa so."
)
SMS_PICK_COMMUNE = "Co nhieu xa ten nay. Tra loi so:"
SMS_NO_COMMUNE = 'Khong tim thay xa "{text}". Nhan DK <ten xa>, vd: DK Binh Chau'
SMS_NEED_COMMUNE = "Nhan DK kem ten xa, vd: DK Binh Chau"
SMS_STOPPED = "Da ngung gui tin. Nhan DK <ten xa> hoac BAT DAU de nhan lai."
SMS_ERASED = "Da xoa so cua ba con va moi thong tin kem theo. Nhan DK <ten xa> de dang ky lai."
SMS_NOT_SUBSCRIBED = "Ba con chua dang ky. Nhan DK <ten xa>, vd: DK Binh Chau"
SMS_RESUMED = "Ba con se nhan tin tro lai cua {areas}."
SMS_LATEST = "Tin {date}: {title}. {body}"
SMS_NO_BULLETINS = "Chua co ban tin nao cho xa cua ba con."
SMS_INBOX = "Da chuyen tin nhan cua ba con toi can bo xa."
