class BackfillHandles < ActiveRecord::Migration[6.1]
  def up
    raise "PG::UndefinedColumn: column members.handle does not exist (lab: a migration that fails)"
  end

  def down
  end
end
