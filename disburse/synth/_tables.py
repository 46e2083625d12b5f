"""Small tables the synthetic population is drawn from: words, shares, codes.

Shares are rounded from public statistics where one exists (cited beside it);
where none does they are set so that the sample policies have both eligible and
ineligible cases in every branch.  Every table here is short: generation picks
from them by index, never by looping over rows.
"""

from __future__ import annotations

# --- people ------------------------------------------------------------------------

# Population by five-year age group, 0-4 .. 95-99 and 100+, in millions: the 2020
# census (第七次全国人口普查), which counted about 119,000 centenarians.
AGE_GROUP_MILLIONS = (
    77.9, 90.2, 85.3, 72.7, 74.9, 91.9, 124.1, 99.0, 93.0, 114.2,
    121.2, 101.4, 73.4, 74.0, 47.7, 31.0, 20.4, 10.6, 3.3, 0.76, 0.12,
)  # fmt: skip

# Share of each age group already dead and still on the register (deaths of the
# last few years, not yet purged), by the same groups.
DECEASED_SHARE = (
    0.002, 0.0005, 0.0005, 0.001, 0.001, 0.001, 0.001, 0.002, 0.003, 0.004,
    0.006, 0.009, 0.015, 0.022, 0.035, 0.06, 0.1, 0.16, 0.25, 0.33, 0.4,
)  # fmt: skip

# Share of men by the same groups: 51% at birth, fewer among the old.
MALE_SHARE = (
    0.53, 0.535, 0.535, 0.53, 0.52, 0.515, 0.51, 0.51, 0.51, 0.505,
    0.5, 0.5, 0.495, 0.49, 0.48, 0.46, 0.44, 0.41, 0.37, 0.33, 0.3,
)  # fmt: skip

# Most common surnames (about 85% of the population between them), weighted by
# rank; a few two-character surnames are kept so that names vary in length.
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "司徒")
COMPOUND_SURNAME_SHARE = 0.002

GIVEN_MALE = "伟强磊军洋勇杰涛明超斌鹏浩宇俊晨轩博文华建国志辉刚飞平鑫凯峰毅坤瑞霖睿哲铭泽翔诚健宏"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞婷雪琳颖欣怡萱涵佳雨梓思悦诗晶玲慧倩琪瑶蕾薇妍婉洁清月彤璐嘉蓉丹"
TWO_CHARACTER_GIVEN_SHARE = 0.75

# Marriage by age (alive persons aged 22 and over): share married, by the
# lower bound of the age band.
MARRIED_BY_AGE = ((22, 0.12), (25, 0.45), (30, 0.78), (35, 0.88), (40, 0.9), (70, 0.72), (80, 0.45))

# Insured employment by age band (lower bound, men, women): women retire earlier.
EMPLOYED_BY_AGE = (
    (16, 0.02, 0.02), (18, 0.12, 0.12), (22, 0.55, 0.55), (25, 0.76, 0.7),
    (50, 0.66, 0.5), (55, 0.55, 0.2), (60, 0.12, 0.04), (65, 0.0, 0.0),
)  # fmt: skip

# Highest award by age at the snapshot (lower bound of band): shares of none,
# vocational, associate, bachelor, master, doctor.  Tertiary attainment in
# China rose from ~5% of those born in 1960 to over half of today's twenties.
EDUCATION_BY_AGE = (
    (16, (0.7, 0.3, 0.0, 0.0, 0.0, 0.0)),
    (20, (0.36, 0.12, 0.24, 0.22, 0.05, 0.01)),
    (36, (0.62, 0.11, 0.13, 0.11, 0.025, 0.005)),
    (51, (0.84, 0.07, 0.05, 0.035, 0.004, 0.001)),
    (66, (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)),
)
LEVELS = ("vocational", "associate", "bachelor", "master", "doctor")
# Usual age at graduation for each level (plus 0-2 years of spread).
GRADUATION_AGE = (18, 21, 22, 25, 29)

# --- enterprises -------------------------------------------------------------------

LEGAL_FORMS = (
    "company", "individual_business", "partnership", "sole_proprietorship",
    "farmer_cooperative", "social_organisation", "foundation", "private_non_enterprise",
    "law_firm", "accounting_firm", "public_institution", "branch",
)  # fmt: skip
LEGAL_FORM_SHARE = (0.55, 0.35, 0.025, 0.015, 0.01, 0.006, 0.001, 0.008, 0.003, 0.002, 0.005, 0.025)

# GB 32100-2015 registration authority and organisation type (characters 1 and 2)
# of each legal form: 9 market regulation (1 enterprise, 2 individual business,
# 3 farmer cooperative), 5 civil affairs (1 social organisation, 2 private
# non-enterprise unit, 3 foundation), 3 justice (1 law firm), 1 establishment
# office (2 public institution).  Accounting firms register as enterprises.
LEGAL_FORM_AUTHORITY = (
    "91", "92", "91", "91", "93", "51", "53", "52", "31", "91", "12", "91",
)  # fmt: skip

SIZE_CLASSES = ("micro", "small", "medium", "large")
# Size shares among individual businesses and among all other forms, chosen so
# that the whole register is about 75% micro, 18% small, 5% medium, 1.5% large
# and 0.5% unclassified (micro and small enterprises are 99% of China's total).
SIZE_SHARE_INDIVIDUAL = (0.992, 0.005, 0.0, 0.0)  # rest: unclassified
SIZE_SHARE_OTHER = (0.6197, 0.2742, 0.0769, 0.0231)

STATUSES = ("active", "revoked", "deregistered")
STATUS_SHARE = (0.88, 0.04, 0.08)

# GB/T 4754-2017 sections and their two-digit divisions.
SECTION_DIVISIONS = {
    "A": (1, 5), "B": (6, 12), "C": (13, 43), "D": (44, 46), "E": (47, 50),
    "F": (51, 52), "G": (53, 60), "H": (61, 62), "I": (63, 65), "J": (66, 69),
    "K": (70, 70), "L": (71, 72), "M": (73, 75), "N": (76, 79), "O": (80, 82),
    "P": (83, 83), "Q": (84, 85), "R": (86, 90), "S": (91, 96), "T": (97, 97),
}  # fmt: skip
SECTIONS = tuple(SECTION_DIVISIONS)
# Section shares among companies and among individual businesses.
SECTION_SHARE_COMPANY = {
    "F": 0.28, "C": 0.14, "L": 0.13, "M": 0.10, "I": 0.08, "E": 0.06, "H": 0.04,
    "G": 0.04, "K": 0.03, "O": 0.03, "R": 0.03, "A": 0.01, "J": 0.01, "P": 0.01,
    "Q": 0.005, "N": 0.005, "D": 0.003, "B": 0.001, "S": 0.001,
}  # fmt: skip
SECTION_SHARE_INDIVIDUAL = {
    "F": 0.45, "H": 0.22, "O": 0.18, "G": 0.05, "C": 0.03, "R": 0.03, "E": 0.02, "A": 0.02,
}  # fmt: skip
# Fixed industry classes of the legal forms that have one (GB/T 4754-2017):
# 7221 lawyers, 7241 accounting, 9521/9522 professional and trade associations,
# 9530 foundations, 8391 vocational training, 8514 care for the elderly, 8411
# general hospitals, 8331 junior secondary schools, 8831 libraries.
FIXED_INDUSTRY = {
    "law_firm": ("L7221",),
    "accounting_firm": ("L7241",),
    "social_organisation": ("S9521", "S9522"),
    "foundation": ("S9530",),
    "private_non_enterprise": ("P8391", "Q8514", "P8399"),
    "public_institution": ("Q8411", "P8331", "R8831"),
    "farmer_cooperative": ("A0111", "A0153", "A0169", "A0311"),
}

# Name words.  Trade names are two characters from BRAND; the industry word
# follows the GB/T 4754 section.
BRAND = "华信达恒瑞丰鑫创泰盛安宏源博兴金天新中永德荣嘉明伟海隆通宇凯汇美佳和聚远科云星豪晟昊"
INDUSTRY_WORDS = {
    "A": ("农业开发", "生态农业", "农业科技"),
    "B": ("矿业",),
    "C": ("机械", "电子", "纺织", "服饰", "新材料", "精密制造", "电器", "包装"),
    "D": ("能源", "电力"),
    "E": ("建设", "建筑工程", "装饰工程", "市政工程"),
    "F": ("贸易", "商贸", "供应链", "电子商务", "进出口"),
    "G": ("物流", "运输", "供应链管理"),
    "H": ("餐饮管理", "酒店管理"),
    "I": ("网络科技", "信息技术", "软件", "数据科技", "智能科技"),
    "J": ("投资管理", "资产管理"),
    "K": ("房地产开发", "物业管理"),
    "L": ("企业管理", "商务咨询", "人力资源", "广告", "会展服务"),
    "M": ("科技", "技术", "工程设计", "检测技术"),
    "N": ("环境工程", "园林绿化"),
    "O": ("家政服务", "汽车服务", "美容"),
    "P": ("教育科技", "文化培训"),
    "Q": ("医疗科技", "健康管理"),
    "R": ("文化传媒", "体育发展", "影视"),
    "S": ("社会服务",),
    "T": ("国际交流",),
}
SHOP_WORDS = (
    "便利店", "小吃店", "面馆", "理发店", "五金店", "服装店", "水果店", "商行", "经营部",
    "维修部", "工作室", "超市", "茶馆", "烟酒店", "快餐店", "美甲店",
)  # fmt: skip
COOPERATIVE_WORDS = ("茶叶", "蔬菜", "水果", "竹笋", "花卉", "畜禽养殖", "水产养殖", "粮食")
ASSOCIATION_WORDS = (
    "餐饮行业协会", "软件行业协会", "书法家协会", "摄影家协会", "志愿者协会",
    "老年体育协会", "个体劳动者协会", "商会", "学会",
)  # fmt: skip
FOUNDATION_WORDS = ("教育基金会", "慈善基金会", "公益基金会", "助学基金会")
NON_ENTERPRISE_WORDS = ("培训学校", "幼儿园", "养老院", "社会工作服务中心", "艺术培训中心")
INSTITUTION_WORDS = (
    "人民医院", "中医院", "妇幼保健院", "图书馆", "文化馆", "第一中学", "实验小学",
    "疾病预防控制中心", "社会福利院", "融媒体中心",
)  # fmt: skip

# --- money -------------------------------------------------------------------------

# Median monthly revenue in yuan by size class (unclassified last); lognormal.
REVENUE_MEDIAN_YUAN = (30_000, 400_000, 4_000_000, 40_000_000, 60_000)
# Headcount (insured employees) ranges by size class, drawn log-uniformly; the
# statistics bureau's thresholds depend on the industry, these sit between.
HEADCOUNT_RANGE = ((1, 19), (5, 80), (30, 300), (100, 2000), (1, 40))

# Revenue by calendar month (the Spring Festival month is replaced by the dip):
# Double Eleven in November, the year-end rush in December.
REVENUE_SEASON = (0.95, 0.95, 1.0, 0.98, 1.0, 1.05, 0.97, 0.97, 1.02, 0.96, 1.07, 1.18)
SPRING_FESTIVAL_REVENUE = 0.78
SPRING_FESTIVAL_HEADCOUNT = 0.985

# Unemployment insurance: employer rate 0.5% of the wage base (Zhejiang since
# 2019), base between the provincial floor and ceiling; bases move each July.
UI_EMPLOYER_RATE_PER_MILLE = 5
WAGE_BASE_YUAN = (4_000, 30_000)
WAGE_BASE_MEDIAN_YUAN = 7_000

# CNAPS bank categories: code, share among enterprise accounts, enterprise
# account length, share among personal accounts, card BIN prefix, card length.
BANKS = (
    ("102", 0.18, 19, 0.20, "622202", 19),  # Industrial and Commercial Bank of China
    ("103", 0.12, 19, 0.15, "622848", 19),  # Agricultural Bank of China
    ("104", 0.08, 12, 0.10, "621700", 19),  # Bank of China
    ("105", 0.12, 20, 0.20, "621700", 19),  # China Construction Bank
    ("301", 0.05, 21, 0.07, "622262", 17),  # Bank of Communications
    ("302", 0.03, 19, 0.0, "621768", 19),  # China CITIC Bank
    ("305", 0.03, 15, 0.0, "622622", 16),  # China Minsheng Bank
    ("308", 0.06, 15, 0.02, "621483", 16),  # China Merchants Bank
    ("309", 0.04, 18, 0.0, "622909", 18),  # Industrial Bank
    ("310", 0.04, 16, 0.0, "622521", 16),  # Shanghai Pudong Development Bank
    ("313", 0.10, 16, 0.10, "621523", 16),  # city commercial bank
    ("314", 0.10, 19, 0.08, "622858", 19),  # rural commercial bank
    ("402", 0.0, 22, 0.03, "621058", 19),  # rural credit cooperative
    ("403", 0.05, 19, 0.05, "621799", 19),  # Postal Savings Bank of China
)

# --- credit lists ------------------------------------------------------------------

ENTERPRISE_LISTS = (
    "serious_dishonesty",
    "tax_violation",
    "wage_arrears",
    "social_insurance_arrears",
)
ENTERPRISE_LIST_SHARE = (0.4, 0.25, 0.2, 0.15)
PERSON_LISTS = ("serious_dishonesty", "tax_violation", "wage_arrears")
PERSON_LIST_SHARE = (0.8, 0.08, 0.12)
LISTED_SHARE = 0.01  # of enterprises, and of adult persons
OUTSIDE_LISTED_SHARE = 0.03  # extra rows naming subjects registered elsewhere

# Division codes (GB/T 2260) outside the city: for employers and listed subjects
# registered elsewhere (drawn evenly), and for the household registrations (户籍) of
# residents from elsewhere (drawn by HOME_PROVINCE_SHARE).  Other cities of Zhejiang
# (33, outside Hangzhou's 3301) are here too, so that "outside the city" and
# "outside the province" differ.
OUTSIDE_REGIONS = (
    # the first twelve: Shanghai, Nanjing, Suzhou, Ningbo, Wenzhou, Jiaxing, Huzhou,
    # Shaoxing, Hefei, Shenzhen, Beijing
    "310101", "310115", "320102", "320505", "330203", "330302", "330402",
    "330502", "330602", "340104", "440305", "110105",
    # Zhejiang: Jinhua Wucheng, Yiwu, Quzhou Kecheng, Zhoushan Dinghai, Taizhou
    # Jiaojiang, Lishui Liandu, Rui'an
    "330702", "330782", "330802", "330902", "331002", "331102", "330381",
    # Anhui: Fuyang Yingzhou, Linquan, Suzhou Yongqiao, Lu'an Yu'an, Wangjiang
    "341202", "341221", "341302", "341503", "340827",
    # Jiangxi: Nanchang Donghu, Ganzhou Zhanggong, Fuzhou Linchuan, Shangrao Xinzhou
    "360102", "360702", "361002", "361102",
    # Henan: Zhengzhou Zhongyuan, Xinyang Shihe, Zhoukou Chuanhui, Shangqiu Liangyuan
    "410102", "411502", "411602", "411402",
    # Guizhou: Guiyang Nanming, Anshun Xixiu, Bijie Qixingguan, Kaili
    "520102", "520402", "520502", "522601",
    # Sichuan: Chengdu Jinjiang, Guang'an, Dazhou Tongchuan, Xichang
    "510104", "511602", "511702", "513401",
    # Hubei: Wuhan Jiang'an, Jingzhou Shashi, Xiaogan Xiaonan
    "420102", "421002", "420902",
    # Hunan: Changsha Furong, Yueyang Yueyanglou, Yongzhou Lingling
    "430102", "430602", "431102",
    # Jiangsu: Huai'an Xuyi, Suqian Sucheng; Shandong: Jinan Lixia, Linyi Lanshan
    "320830", "321302", "370102", "371302",
    # Chongqing Wanzhou, Yunnan: Kunming Wuhua, Yuxi Hongta; Guangxi: Nanning Xingning
    "500101", "530102", "530402", "450102",
    # Fujian: Fuzhou Gulou; Gansu: Lanzhou Chengguan; Heilongjiang: Harbin Daoli
    "350102", "620102", "230102",
)  # fmt: skip

# Residents registered elsewhere (外来人口) among the city's residents, by age band
# (lower bound, share of households whose head is that age): Hangzhou counted 11.9
# million residents in the 2020 census against about 8.2 million registered, so
# close to a third of its working-age residents are registered elsewhere; few of
# the old are (those who followed their children).  Their children share the
# registration.  Shares set to those figures, not measured per age.
HOME_ELSEWHERE_BY_AGE = (
    (16, 0.22), (20, 0.4), (30, 0.38), (40, 0.32), (50, 0.22), (60, 0.07), (70, 0.04),
)  # fmt: skip
# Where they are registered, by province (the first two digits): the rest of the
# province first, then the provinces Zhejiang's migrants mostly come from (Anhui,
# Guizhou, Jiangxi, Henan and Sichuan among the largest in the 2020 census); set in
# that order, not measured.  Each province's share is split evenly among its codes above.
HOME_PROVINCE_SHARE = {
    "33": 0.30, "34": 0.16, "52": 0.09, "36": 0.09, "41": 0.08, "51": 0.06,
    "43": 0.04, "42": 0.04, "32": 0.03, "37": 0.02, "53": 0.02, "50": 0.02,
    "45": 0.01, "35": 0.01, "62": 0.01, "23": 0.005, "31": 0.005, "11": 0.005,
    "44": 0.005,
}  # fmt: skip

TAX_RATINGS = ("A", "B", "M", "C", "D")
