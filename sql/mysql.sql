-- siptrace-rs: the sip_trace table (version 4) for MySQL and MariaDB, as
-- written by Kamailio's db_mysql. Safe to run on a database that already
-- has it.

CREATE TABLE IF NOT EXISTS version (
    id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INT UNSIGNED DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);

CREATE TABLE IF NOT EXISTS sip_trace (
    id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    time_stamp DATETIME DEFAULT '2000-01-01 00:00:01' NOT NULL,
    time_us INT UNSIGNED DEFAULT 0 NOT NULL,
    callid VARCHAR(255) DEFAULT '' NOT NULL,
    traced_user VARCHAR(255) DEFAULT '' NOT NULL,
    msg MEDIUMTEXT NOT NULL,
    method VARCHAR(50) DEFAULT '' NOT NULL,
    status VARCHAR(255) DEFAULT '' NOT NULL,
    fromip VARCHAR(64) DEFAULT '' NOT NULL,
    toip VARCHAR(64) DEFAULT '' NOT NULL,
    fromtag VARCHAR(128) DEFAULT '' NOT NULL,
    totag VARCHAR(128) DEFAULT '' NOT NULL,
    direction VARCHAR(4) DEFAULT '' NOT NULL,
    INDEX traced_user_idx (traced_user),
    INDEX date_idx (time_stamp),
    INDEX fromip_idx (fromip),
    INDEX callid_idx (callid)
);

INSERT INTO version (table_name, table_version) VALUES ('sip_trace', 4)
    ON DUPLICATE KEY UPDATE table_version = VALUES(table_version);
