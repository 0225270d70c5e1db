-- since v4
CREATE TABLE events (id integer, at text);
